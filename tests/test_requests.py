"""Answers and errors as values: strategies, bad input, and a server that keeps serving."""

from __future__ import annotations

import asyncio
import os
import socket

from conftest import MAX_REQUEST_BYTES

from proofrace.client import (
    Answer,
    AttemptOutcome,
    Client,
    Conflict,
    ErrorKind,
    Format,
    Grounds,
    Strategy,
    Verdict,
)

from harness import SAMPLES, RunningServer

EASY_SMT = (SAMPLES / "distinct.smt2").read_text()


def solve(server: RunningServer, run, content, **options):
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(content, **options)
            return await job.result()

    return run(scenario())


def test_every_installed_prover_for_the_format_by_default(server: RunningServer, run) -> None:
    outcome = solve(server, run, (SAMPLES / "socrates.p").read_text())
    assert outcome.verdict is Verdict.PROVED
    assert outcome.format is Format.TPTP
    assert {a.prover for a in outcome.attempts} == {"eprover", "spass", "cvc5-tptp"}


def test_sat_is_a_refutation(server: RunningServer, run) -> None:
    outcome = solve(server, run, (SAMPLES / "satisfiable.smt2").read_text(), provers=["z3"])
    assert outcome.verdict is Verdict.REFUTED
    (z3,) = outcome.attempts
    assert z3.outcome is AttemptOutcome.NO_PROOF_FOUND and z3.answer is Answer.REFUTED
    # cvc5 found the model z3 printed satisfies the problem.
    assert z3.grounds is Grounds.MODEL_CHECKED
    assert outcome.grounds is Grounds.MODEL_CHECKED


def test_tptp_countersatisfiable_is_a_refutation(server: RunningServer, run) -> None:
    content = (SAMPLES / "no-proof.p").read_text()
    outcome = solve(server, run, content, provers=["eprover"])
    assert outcome.verdict is Verdict.REFUTED
    assert "CounterSatisfiable" in outcome.attempts[0].status


def test_all_runs_every_attempt_to_completion(server: RunningServer, run) -> None:
    outcome = solve(server, run, EASY_SMT, provers=["z3", "cvc5"], strategy=Strategy.ALL)
    assert outcome.verdict is Verdict.PROVED
    assert [a.outcome for a in outcome.attempts] == [AttemptOutcome.PROVED] * 2
    assert all(a.stop is None for a in outcome.attempts)


def test_quorum_stops_once_enough_provers_agree(server: RunningServer, run) -> None:
    outcome = solve(
        server, run, EASY_SMT, provers=["z3", "cvc5", "think"], strategy=Strategy.QUORUM, quorum=2
    )
    assert outcome.verdict is Verdict.PROVED
    by_prover = {a.prover: a for a in outcome.attempts}
    assert by_prover["z3"].outcome is AttemptOutcome.PROVED
    assert by_prover["cvc5"].outcome is AttemptOutcome.PROVED
    assert by_prover["think"].outcome is AttemptOutcome.CANCELLED
    assert server.prover_pids() == []


def test_contradictory_answers_are_reported_and_counted(server: RunningServer, run) -> None:
    before = server.metric("proofrace_disagreements_total")
    outcome = solve(server, run, EASY_SMT, provers=["z3", "liar"], strategy=Strategy.ALL)
    assert outcome.disagreement
    answers = {a.prover: a.answer for a in outcome.attempts}
    assert answers == {"z3": Answer.PROVED, "liar": Answer.REFUTED}
    # Neither side is certified: a conflict, never the earlier answer.
    assert outcome.verdict is Verdict.UNKNOWN
    assert outcome.winner == ""
    assert outcome.conflict == Conflict(proved=("z3",), refuted=("liar",))
    assert outcome.grounds is Grounds.NONE
    assert server.metric("proofrace_disagreements_total") == before + 1
    server.wait_for_event(
        lambda e: e["event"] == "solve.disagreement" and e["solve_id"] == outcome.solve_id
    )


# z3 cannot read str.to_lower (it is newer than z3 4.8): it reports the error, then says `sat`
# about the assertions that are left. cvc5 reads it and proves the problem.
Z3_SAT_AFTER_ERROR = """(set-logic ALL)
(declare-const x Int)
(assert (> x 0))
(assert (= (str.to_lower "A") "B"))
(check-sat)
"""


def test_an_answer_after_an_error_is_no_disagreement(server: RunningServer, run) -> None:
    before = server.metric("proofrace_disagreements_total")
    outcome = solve(server, run, Z3_SAT_AFTER_ERROR, provers=["z3", "cvc5"], strategy=Strategy.ALL)
    by_prover = {a.prover: a for a in outcome.attempts}
    assert by_prover["z3"].outcome is AttemptOutcome.INVALID_INPUT
    assert by_prover["z3"].answer is Answer.REFUTED  # what it printed, reported but not counted
    assert (outcome.verdict, outcome.winner) == (Verdict.PROVED, "cvc5")
    assert not outcome.disagreement
    assert outcome.conflict is None
    assert server.metric("proofrace_disagreements_total") == before


def test_garbage_gets_invalid_input_with_the_provers_message(server: RunningServer, run) -> None:
    outcome = solve(server, run, "(assert (frobnicate x))\n(check-sat)\n", provers=["z3", "cvc5"])
    assert outcome.verdict is Verdict.ERROR
    assert outcome.error is not None
    assert outcome.error.kind is ErrorKind.INVALID_INPUT
    for attempt in outcome.attempts:
        assert attempt.outcome is AttemptOutcome.INVALID_INPUT
        assert "frobnicate" in attempt.message or "x" in attempt.message
    # z3 goes on after the error and says "sat" about what is left: the error must win.
    z3 = next(a for a in outcome.attempts if a.prover == "z3")
    assert z3.outcome is AttemptOutcome.INVALID_INPUT


def test_garbage_dimacs_and_tptp_are_invalid_input(server: RunningServer, run) -> None:
    cnf = solve(server, run, "p cnf 2 1\n1 x 0\n", format=Format.DIMACS)
    assert cnf.error is not None and cnf.error.kind is ErrorKind.INVALID_INPUT
    tptp = solve(server, run, "fof(a, axiom, (p &)).\n", format=Format.TPTP)
    assert tptp.error is not None and tptp.error.kind is ErrorKind.INVALID_INPUT


def test_request_errors_are_clear_values(server: RunningServer, run) -> None:
    cases = [
        (dict(content="just words"), ErrorKind.UNSUPPORTED_FORMAT, "recognise"),
        (dict(content=EASY_SMT, provers=["vampire"]), ErrorKind.UNKNOWN_PROVER, "vampire"),
        (dict(content="p cnf 1 1\n1 0\n", provers=["z3"]), ErrorKind.UNSUPPORTED_FORMAT, "z3"),
        (dict(content=EASY_SMT, provers=["z3", "z3"]), ErrorKind.INVALID_REQUEST, "more than once"),
        (dict(content="  \n"), ErrorKind.INVALID_REQUEST, "empty"),
        (
            dict(content=EASY_SMT, provers=["z3"], strategy=Strategy.QUORUM, quorum=2),
            ErrorKind.INVALID_REQUEST,
            "quorum",
        ),
    ]
    for options, kind, words in cases:
        content = options.pop("content")
        outcome = solve(server, run, content, **options)
        assert outcome.verdict is Verdict.ERROR, options
        assert outcome.error is not None and outcome.error.kind is kind, outcome.error
        assert words in outcome.error.message


def test_an_oversized_request_is_refused(server: RunningServer, run) -> None:
    content = "; padding\n" * (MAX_REQUEST_BYTES // 10 + 1) + EASY_SMT
    outcome = solve(server, run, content)
    assert outcome.error is not None
    assert outcome.error.kind is ErrorKind.REQUEST_TOO_LARGE
    assert str(MAX_REQUEST_BYTES) in outcome.error.message


def read_to_eof(sock: socket.socket) -> bool:
    while True:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:  # a reset also closes it
            return True


def test_a_malformed_message_closes_that_connection_only(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(EASY_SMT, provers=["z3", "think"])
            # Meanwhile a peer sends garbage: a segment table claiming a huge message.
            loop = asyncio.get_running_loop()
            with socket.create_connection((server.host, server.port)) as rogue:
                rogue.sendall(b"\xff\xff\xff\x7f" + os.urandom(4096))
                rogue.settimeout(10)
                # The server may say why (an Abort message) before it closes: read to the end.
                closed_by_server = await loop.run_in_executor(None, read_to_eof, rogue)
            return closed_by_server, await job.result(), await client.provers()

    closed_by_server, outcome, provers = run(scenario())
    assert closed_by_server
    assert outcome.verdict is Verdict.PROVED
    assert any(p.name == "z3" for p in provers)


def test_the_provers_list(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            return await client.provers()

    provers = {p.name: p for p in run(scenario())}
    for name in ("z3", "cvc5", "cadical", "minisat", "eprover", "spass"):
        assert provers[name].available, name
    assert provers["z3"].version and Format.SMTLIB2 in provers["z3"].formats
    assert provers["eprover"].formats == (Format.TPTP,)


def test_health_and_metrics_endpoints(server: RunningServer) -> None:
    assert server.http_get("/healthz") == (200, "ok\n")
    text = server.metrics_text()
    for name in (
        "proofrace_preemption_latency_seconds",
        "proofrace_solves_total",
        "proofrace_attempts_total",
        "proofrace_solves_in_flight",
        "proofrace_attempts_in_flight",
        "proofrace_solve_duration_seconds",
        "proofrace_disagreements_total",
    ):
        assert name in text
    assert server.http_get("/nowhere")[0] == 404
