"""The pure parts, on their own: cancel scopes, output scanning, format detection, the judge,
the registry and the settings."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import structlog

from proofrace.backends.local import failure_message, remove_scratch, remove_small_scratch
from proofrace.backends.registry import Registry, RegistryError, parse
from proofrace.backends.verdicts import Finding, OutputScanner, Rule
from proofrace.config import ConfigError, Settings
from proofrace.core.cancel import CancelScope
from proofrace.core.formats import detect
from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    CancelCause,
    CancelReason,
    Conflict,
    Exit,
    Format,
    Grounds,
    Stop,
    Strategy,
    Verdict,
)
from proofrace.core.once import Once
from proofrace.observe import logs
from proofrace.race.strategy import Judge

CLIENT = CancelReason(CancelCause.CLIENT, "stop")
TIMEOUT = CancelReason(CancelCause.TIMEOUT, "deadline")


# --- cancel scopes ---------------------------------------------------------------------


def test_cancel_once_and_the_first_reason_stays() -> None:
    scope = CancelScope()
    seen: list[CancelReason] = []
    scope.on_cancel(seen.append)
    assert scope.cancel(CLIENT)
    assert not scope.cancel(CancelReason(CancelCause.TIMEOUT))
    assert scope.reason == CLIENT and seen == [CLIENT]
    assert scope.called_ns is not None


def test_children_follow_their_parent_with_its_instant_not_the_reverse() -> None:
    parent = CancelScope()
    child = parent.child()
    grandchild = child.child()
    sibling = parent.child()
    sibling.cancel(CLIENT)
    assert not parent.cancel_called
    parent.cancel(CancelReason(CancelCause.SHUTDOWN))
    assert grandchild.reason == CancelReason(CancelCause.SHUTDOWN)
    assert grandchild.called_ns == parent.called_ns
    assert sibling.reason == CLIENT


def test_a_callback_registered_late_runs_at_once_and_removed_ones_never() -> None:
    scope = CancelScope()
    calls: list[str] = []
    remove = scope.on_cancel(lambda _r: calls.append("removed"))
    remove()
    scope.cancel(CLIENT)
    scope.on_cancel(lambda _r: calls.append("late"))
    assert calls == ["late"]


def test_wait_wakes_on_cancel() -> None:
    async def scenario() -> CancelReason:
        scope = CancelScope()
        asyncio.get_running_loop().call_soon(scope.cancel, CLIENT)  # once wait() is waiting
        return await scope.wait()

    assert asyncio.run(scenario()) == CLIENT


def test_wait_is_cancel_safe() -> None:
    async def scenario() -> CancelReason:
        scope = CancelScope()
        for cancel_the_scope_too in (False, True):
            waiting = asyncio.ensure_future(scope.wait())
            await asyncio.sleep(0)  # one turn: the task is now waiting
            waiting.cancel()
            if cancel_the_scope_too:  # in the same turn as the task's cancellation
                scope.cancel(CLIENT)
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert not scope._waiters  # nothing left behind
        return await scope.wait()  # and the reason was not lost

    assert asyncio.run(scenario()) == CLIENT


# --- output scanning -------------------------------------------------------------------

RULES = (
    Rule(re.compile(r"^unsat$"), Finding.PROVED),
    Rule(re.compile(r"^sat$"), Finding.REFUTED),
    Rule(re.compile(r'^\(error "(?P<message>[^"]*)'), Finding.INVALID_INPUT),
)


def test_lines_split_across_reads_are_scanned_whole() -> None:
    scanner = OutputScanner(RULES, tail_bytes=64)
    for piece in (b"uns", b"at\n"):
        scanner.feed(piece)
    assert scanner.answer is not None and scanner.answer.finding is Finding.PROVED


def test_the_first_error_is_kept_with_its_message() -> None:
    scanner = OutputScanner(RULES, tail_bytes=64)
    scanner.feed(b'(error "line 1: bad")\n(error "line 2: worse")\nsat\n')
    assert scanner.error is not None and scanner.error.message == "line 1: bad"
    assert scanner.answer is not None and scanner.answer.finding is Finding.REFUTED


def test_the_tail_is_bounded_and_the_count_is_not() -> None:
    scanner = OutputScanner(RULES, tail_bytes=100)
    for _ in range(1000):
        scanner.feed(b"v 1 2 3 4 5 6 7 8 9 0\n")
    scanner.feed(b"unsat")
    scanner.close()
    assert scanner.total_bytes == 1000 * 22 + 5
    assert len(scanner.tail) == 100 and scanner.tail.endswith("unsat")
    assert scanner.answer is not None


def test_an_endless_line_does_not_grow_memory() -> None:
    scanner = OutputScanner(RULES, tail_bytes=10)
    for _ in range(100):
        scanner.feed(b"x" * 100_000)
    assert len(scanner._partial) <= 4096


# --- formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("c a comment\np cnf 3 2\n1 -3 0\n2 3 -1 0\n", Format.DIMACS),
        ("% comment\nfof(a, axiom, p).\n", Format.TPTP),
        ("; comment\n(set-logic QF_UF)\n(check-sat)\n", Format.SMTLIB2),
        ("(declare-fun f (Int) Int)\n", Format.SMTLIB2),
        ("hello world", None),
    ],
)
def test_format_detection(text: str, expected: Format | None) -> None:
    assert detect(text.encode()) is expected


# --- the judge -------------------------------------------------------------------------


def result(prover: str, answer: Answer, outcome: AttemptOutcome) -> AttemptResult:
    return AttemptResult(prover, outcome, answer=answer)


PROVED = (Answer.PROVED, AttemptOutcome.PROVED)
REFUTED = (Answer.REFUTED, AttemptOutcome.NO_PROOF_FOUND)
UNKNOWN = (Answer.UNKNOWN, AttemptOutcome.NO_PROOF_FOUND)


def test_first_wins_decides_on_the_first_decisive_answer() -> None:
    judge = Judge(Strategy.FIRST_WINS, quorum=2)
    assert not judge.record(result("a", *UNKNOWN))
    assert judge.record(result("b", *REFUTED))
    assert judge.decide(None).verdict is Verdict.REFUTED
    assert judge.decide(None).winner == "b"


def test_a_cancel_after_the_decision_changes_nothing() -> None:
    judge = Judge(Strategy.FIRST_WINS, quorum=2)
    judge.record(result("a", *PROVED))
    assert judge.decide(CLIENT).verdict is Verdict.PROVED


def test_quorum_needs_agreement_and_names_the_first_of_the_agreeing() -> None:
    judge = Judge(Strategy.QUORUM, quorum=2)
    assert not judge.record(result("a", *UNKNOWN))
    assert not judge.record(result("b", *PROVED))
    assert judge.record(result("c", *PROVED))
    decision = judge.decide(None)
    assert (decision.verdict, decision.winner) == (Verdict.PROVED, "b")
    assert decision.grounds is Grounds.CONFIRMED
    assert not judge.disagreement


def test_quorum_is_not_reached_while_answers_contradict() -> None:
    judge = Judge(Strategy.QUORUM, quorum=2)
    assert not judge.record(result("a", *PROVED))
    assert not judge.record(result("b", *REFUTED))
    assert not judge.record(result("c", *PROVED))
    decision = judge.decide(None)
    assert decision.verdict is Verdict.UNKNOWN
    assert decision.conflict == Conflict(proved=("a", "c"), refuted=("b",))
    assert judge.disagreement


def certified(prover: str, answer: Answer, outcome: AttemptOutcome) -> AttemptResult:
    return AttemptResult(prover, outcome, answer=answer, grounds=Grounds.MODEL_CHECKED)


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_conflict_is_never_settled_by_arrival_order(strategy: Strategy) -> None:
    judge = Judge(strategy, quorum=1)
    judge.record(result("early", *REFUTED))
    judge.record(result("late", *PROVED))  # finished before the preemption reached it
    decision = judge.decide(None)
    assert decision.verdict is Verdict.UNKNOWN
    assert decision.winner == ""
    assert decision.conflict == Conflict(proved=("late",), refuted=("early",))
    assert judge.disagreement


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_certified_answer_beats_an_earlier_uncertified_one(strategy: Strategy) -> None:
    judge = Judge(strategy, quorum=2)
    judge.record(result("early", *PROVED))
    decided = judge.record(certified("late", *REFUTED))
    assert decided is (strategy is Strategy.QUORUM)  # firstWins had stopped at "early"
    decision = judge.decide(None)
    assert (decision.verdict, decision.winner) == (Verdict.REFUTED, "late")
    assert decision.grounds is Grounds.MODEL_CHECKED
    assert decision.conflict is None
    assert judge.disagreement  # settled, but still reported


def test_an_answer_after_an_error_neither_counts_nor_disagrees() -> None:
    # z3 prints "sat" after an error on input it cannot read.
    judge = Judge(Strategy.ALL, quorum=2)
    judge.record(result("cvc5", *PROVED))
    judge.record(AttemptResult("z3", AttemptOutcome.INVALID_INPUT, answer=Answer.REFUTED))
    assert not judge.disagreement
    decision = judge.decide(None)
    assert (decision.verdict, decision.winner) == (Verdict.PROVED, "cvc5")
    assert decision.grounds is Grounds.UNCHECKED


def test_a_failed_certificate_never_wins() -> None:
    judge = Judge(Strategy.FIRST_WINS, quorum=2)
    wrong = AttemptResult(
        "liar",
        AttemptOutcome.PROVER_ERROR,
        answer=Answer.REFUTED,
        grounds=Grounds.CERTIFICATE_FAILED,
    )
    assert not judge.record(wrong)
    assert judge.record(result("honest", *PROVED))
    assert judge.decide(None).verdict is Verdict.PROVED
    assert not judge.disagreement


def test_confirm_waits_for_a_second_independent_prover() -> None:
    judge = Judge(Strategy.FIRST_WINS, quorum=2, confirm=True, engines={"cadical-drat": "cadical"})
    assert not judge.record(result("cadical", *PROVED))
    assert not judge.record(result("cadical-drat", *PROVED))  # the same engine
    assert judge.record(result("minisat", *PROVED))
    decision = judge.decide(None)
    assert (decision.verdict, decision.winner) == (Verdict.PROVED, "cadical")
    assert decision.grounds is Grounds.CONFIRMED


def test_confirm_takes_a_certificate_at_once_and_refuses_a_lone_word() -> None:
    judge = Judge(Strategy.FIRST_WINS, quorum=2, confirm=True)
    assert judge.record(certified("minisat", *REFUTED))
    assert judge.decide(None).grounds is Grounds.MODEL_CHECKED
    lone = Judge(Strategy.FIRST_WINS, quorum=2, confirm=True)
    assert not lone.record(result("z3", *PROVED))
    assert lone.decide(None).verdict is Verdict.UNKNOWN
    assert lone.decide(TIMEOUT).verdict is Verdict.TIMEOUT


def test_no_answer_gives_unknown_and_only_errors_give_an_error() -> None:
    judge = Judge(Strategy.FIRST_WINS, quorum=2)
    judge.record(result("a", *UNKNOWN))
    assert judge.decide(None).verdict is Verdict.UNKNOWN
    errors = Judge(Strategy.FIRST_WINS, quorum=2)
    errors.record(AttemptResult("a", AttemptOutcome.INVALID_INPUT, message="bad token"))
    decision = errors.decide(None)
    assert decision.verdict is Verdict.ERROR
    assert decision.error is not None and decision.error.message == "a: bad token"


def test_the_winner_is_the_first_to_answer_not_the_first_recorded() -> None:
    judge = Judge(Strategy.FIRST_WINS, quorum=2)
    assert judge.record(result("late", *PROVED))
    # Recorded second, though it answered first: it finished on its own, before any signal.
    judge.record(result("early", *PROVED))
    judge.prefer_earliest({"late": 2_000_000, "early": 1_000_000})
    assert judge.decide(None).winner == "early"


def test_attempts_stopped_by_their_places_shutdown_end_cancelled_never_an_empty_error() -> None:
    shutdown = CancelReason(CancelCause.SHUTDOWN, "worker w1 is shutting down")
    stop = Stop(shutdown, latency_ns=1000, escalated=False)
    judge = Judge(Strategy.FIRST_WINS, quorum=2)
    judge.record(AttemptResult("z3", AttemptOutcome.CANCELLED, stop=stop))
    judge.record(AttemptResult("cvc5", AttemptOutcome.PROVER_ERROR))
    decision = judge.decide(None)
    assert (decision.verdict, decision.cancel_reason) == (Verdict.CANCELLED, shutdown)
    errors = Judge(Strategy.FIRST_WINS, quorum=2)
    errors.record(AttemptResult("cvc5", AttemptOutcome.PROVER_ERROR))
    error = errors.decide(None).error
    assert error is not None and error.message == "cvc5: proverError, with no message"


# --- registry and settings -------------------------------------------------------------


def test_the_built_in_registry_loads() -> None:
    registry = Registry.load()
    assert {"z3", "cvc5", "cadical", "minisat", "eprover", "spass"} <= set(registry.specs)
    assert registry.specs["z3"].argv("problem.smt2") == ["z3", "-model", "-smt2", "problem.smt2"]
    assert registry.specs["minisat"].argv("p.cnf") == ["minisat", "-verb=0", "p.cnf", "model.out"]


GOOD = {"command": ["x", "{input}"], "formats": ["tptp"], "rules": [["a", "proved"]]}


def test_a_prover_is_stopped_with_sigkill_unless_its_entry_asks_for_sigterm() -> None:
    specs = parse(
        {"plain": GOOD, "gentle": {**GOOD, "stop": "term", "grace_s": 1.5}}, origin="test.toml"
    )
    assert specs["plain"].stop_signal == signal.SIGKILL and specs["plain"].grace_s is None
    assert specs["gentle"].stop_signal == signal.SIGTERM and specs["gentle"].grace_s == 1.5
    assert all(s.stop_signal == signal.SIGKILL for s in Registry.load().specs.values())


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"formats": ["smtlib2"], "rules": [["^sat$", "refuted"]]}, "command"),
        ({"command": ["x"], "formats": ["smtlib2"], "rules": [["^sat$", "refuted"]]}, "{input}"),
        ({"command": ["x", "{input}"], "formats": ["lisp"], "rules": []}, "lisp"),
        ({"command": ["x", "{input}"], "formats": ["tptp"], "rules": [["(", "proved"]]}, "rule"),
        ({"command": ["x", "{input}"], "formats": ["tptp"], "rules": [["a", "great"]]}, "great"),
        ({"command": ["x", "{input}"], "formats": ["tptp"], "rules": []}, "answer"),
        ({**GOOD, "stop": "int"}, "stop"),
        ({**GOOD, "stop": "term", "grace_s": -1}, "grace_s"),
    ],
)
def test_registry_errors_name_the_prover_and_the_field(table: dict, complaint: str) -> None:
    with pytest.raises(RegistryError) as error:
        parse({"bad": table}, origin="test.toml")
    assert "test.toml: prover 'bad'" in str(error.value)
    assert complaint in str(error.value)


def test_settings_layer_file_then_environment_then_flags(tmp_path) -> None:
    config = tmp_path / "proofrace.toml"
    config.write_text('[server]\nlisten = ["0.0.0.0:9000"]\ngrace_s = 1.5\nmemory_limit_mb = 64\n')
    settings = Settings.load(
        str(config),
        environ={"PROOFRACE_GRACE_S": "0.5", "PROOFRACE_LISTEN": "127.0.0.1:1,127.0.0.1:2"},
        overrides={"listen": ["[::1]:3"], "unix": None},
    )
    assert settings.listen == ["[::1]:3"]
    assert settings.grace_s == 0.5
    assert settings.memory_limit_mb == 64


@pytest.mark.parametrize(
    "environ",
    [
        {"PROOFRACE_GRACE_S": "soon"},
        {"PROOFRACE_LISTEN": "nowhere"},
        {"PROOFRACE_LOG_FORMAT": "xml"},
        {"PROOFRACE_IDLE_TIMEOUT_S": "5000000"},
        {"PROOFRACE_MAX_TIMEOUT_S": "5000000"},
    ],
)
def test_bad_settings_are_refused_clearly(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.load(None, environ=environ)


# --- logs ------------------------------------------------------------------------------


def test_log_lines_inside_the_loop_wait_for_the_batch_and_keep_their_instant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    logs.configure("json")
    try:
        log = structlog.get_logger("test")

        async def inside() -> tuple[str, int, int]:
            called = time.time_ns()
            log.info("attempt.reaped", pid=7)
            returned = time.time_ns()
            before = out.getvalue()  # nothing rendered or written in the call itself
            logs.flush()
            return before, called, returned

        before, called, returned = asyncio.run(inside())
        assert before == ""
        (line,) = [json.loads(text) for text in out.getvalue().splitlines()]
        assert line["event"] == "attempt.reaped" and line["pid"] == 7
        stamp = datetime.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        # Stamped within the call (timestamps carry microseconds), not when it was written.
        assert called // 1000 - 1 <= stamp.timestamp() * 1e6 <= returned // 1000 + 1
        log.info("outside.the.loop")  # no loop: written at once
        assert json.loads(out.getvalue().splitlines()[-1])["event"] == "outside.the.loop"
    finally:
        structlog.reset_defaults()


def test_a_prover_ended_by_a_limit_is_told_which() -> None:
    scanner = OutputScanner((), 1024)
    scanner.feed(b"c writing the proof\n")
    assert failure_message(Exit(signal=signal.SIGXFSZ), scanner) == (
        "killed by SIGXFSZ: a file reached the size limit (temp_disk_mb): c writing the proof"
    )
    assert failure_message(Exit(signal=signal.SIGSEGV), OutputScanner((), 1024)) == (
        "killed by SIGSEGV"
    )
    assert failure_message(Exit(code=3), OutputScanner((), 1024)) == "exited with code 3"


@pytest.mark.parametrize("nested", [False, True])
def test_an_attempt_directory_goes_whole_and_nothing_it_links_to_goes(
    tmp_path: Path, nested: bool
) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_text("not the attempt's")
    workdir = tmp_path / "attempt"
    workdir.mkdir()
    (workdir / "problem.cnf").write_text("p cnf 1 1\n1 0\n")
    (workdir / "model").write_text("SAT\n")
    (workdir / "link").symlink_to(kept)
    if nested:  # a prover's own subdirectory: the whole walk
        (workdir / "sub").mkdir()
        (workdir / "sub" / "proof").write_text("0\n")
    remove_scratch(workdir)
    assert not workdir.exists()
    assert (kept / "file").read_text() == "not the attempt's"
    remove_scratch(workdir)  # gone already (or never made): nothing to do


@pytest.mark.parametrize("big", ["many files", "a large file", "a subdirectory"])
def test_only_a_small_scratch_directory_is_removed_in_the_event_loop(
    tmp_path: Path, big: str
) -> None:
    """A few small files go at once, in the loop; anything bigger is left whole for the
    spawn threads (`remove_scratch`), so the loop never waits on a long removal."""
    small = tmp_path / "small"
    small.mkdir()
    (small / "problem.cnf").write_text("p cnf 1 1\n1 0\n")
    (small / "model.out").write_text("SAT\n")
    assert remove_small_scratch(small) and not small.exists()
    assert remove_small_scratch(tmp_path / "never-made")

    workdir = tmp_path / "big"
    workdir.mkdir()
    (workdir / "problem.cnf").write_text("p cnf 1 1\n1 0\n")
    if big == "many files":
        for i in range(20):
            (workdir / f"part-{i}").write_text("0\n")
    elif big == "a large file":
        (workdir / "proof.drat").write_bytes(b"0\n" * 1024 * 1024)
    else:
        (workdir / "sub").mkdir()
    before = sorted(p.name for p in workdir.iterdir())
    assert not remove_small_scratch(workdir)
    assert sorted(p.name for p in workdir.iterdir()) == before
    remove_scratch(workdir)
    assert not workdir.exists()


async def test_a_value_set_once_wakes_its_waiters_and_one_giving_up_leaves_the_rest() -> None:
    value: Once[str] = Once()
    seen: list[str] = []
    value.on_set(seen.append)
    staying, leaving = value.wait(), value.wait()
    leaving.cancel()
    assert value.set("proved") and not value.set("refuted")  # the first value stands
    assert seen == ["proved"]  # in the stack that set it
    assert await staying == "proved" and leaving.cancelled()
    value.on_set(seen.append)  # set already: called at once
    assert seen == ["proved", "proved"] and await value.wait() == "proved"
