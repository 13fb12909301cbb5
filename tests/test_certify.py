"""Certified answers: models checked against the problem, DRAT proofs checked, and a wrong
certificate recorded as the prover's wrong answer, which never wins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVER_ENV

from proofrace.backends.certify import check_dimacs_model
from proofrace.backends.drat import check as check_drat
from proofrace.backends.smtscript import check_script, read_model, read_script
from proofrace.client import (
    AttemptOutcome,
    Client,
    Grounds,
    Strategy,
    Verdict,
)
from proofrace.core.model import SolveOutcome

from harness import SAMPLES, RunningServer, running_server

UNSAT_CNF = "p cnf 1 2\n1 0\n-1 0\n"
UNSAT_SMT = "(declare-const x Int)\n(assert (> x 5))\n(assert (< x 3))\n(check-sat)\n"


def _liar(name: str, fmt: str, script: str, **extra: object) -> list[str]:
    """A prover that answers without reading the problem: a real process, printing lies."""
    lines = [
        f"[{name}]",
        f"command = {json.dumps(['sh', '-c', script, 'sh', '{input}'])}",
        f'formats = ["{fmt}"]',
        "default = false",
        "rules = [['^(s )?(UNSATISFIABLE|unsat)$', \"proved\"],"
        " ['^(s )?(SATISFIABLE|sat)$', \"refuted\"]]",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return [*lines, ""]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("certify")
    registry = tmp / "liars.toml"
    registry.write_text(
        "\n".join(
            _liar("dimacs-liar", "dimacs", "echo s SATISFIABLE; echo v 1 0", model="stdout")
            + _liar(
                "smt-liar",
                "smtlib2",
                "echo sat; echo '((define-fun x () Int 0))'",
                model="stdout",
                check=["z3", "-smt2", "{check}"],
            )
            + _liar("unsat-liar", "dimacs", "echo s UNSATISFIABLE")
            + _liar(
                "slow-check",
                "smtlib2",
                "echo sat; echo '((define-fun x () Int 0))'",
                model="stdout",
                check=["sh", "-c", "sleep 600; echo unsat", "sh", "{check}"],
            )
            + _liar(
                "drat-liar",
                "dimacs",
                "echo s UNSATISFIABLE; echo '1 0' > proof.drat",
                proof="drat",
                check=["{python}", "-m", "proofrace.backends.drat", "{input}", "{proof}"],
            )
        )
    )
    args = ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--provers-file", str(registry)]
    with running_server(args, SERVER_ENV) as running:
        yield running


def solve(server: RunningServer, run, content: str, **options) -> SolveOutcome:
    async def scenario() -> SolveOutcome:
        async with Client.connect(server.address) as client:
            job = await client.solve(content, **options)
            return await job.result()

    result: SolveOutcome = run(scenario())
    return result


def by_prover(outcome: SolveOutcome):
    return {a.prover: a for a in outcome.attempts}


@pytest.mark.parametrize(
    ("liar", "content", "honest"),
    [("dimacs-liar", UNSAT_CNF, "minisat"), ("smt-liar", UNSAT_SMT, "z3")],
)
def test_a_wrong_model_is_the_provers_wrong_answer_and_never_wins(
    server: RunningServer, run, liar: str, content: str, honest: str
) -> None:
    before = server.metric("proofrace_wrong_answers_total", prover=liar)
    outcome = solve(server, run, content, provers=[liar, honest], strategy=Strategy.ALL)
    lie = by_prover(outcome)[liar]
    assert lie.outcome is AttemptOutcome.PROVER_ERROR
    assert lie.grounds is Grounds.CERTIFICATE_FAILED
    assert lie.message.startswith("wrong answer:")
    assert (outcome.verdict, outcome.winner) == (Verdict.PROVED, honest)
    assert not outcome.disagreement  # a refuted certificate is no answer to disagree with
    assert server.metric("proofrace_wrong_answers_total", prover=liar) == before + 1
    logged = server.wait_for_event(
        lambda e: e["event"] == "attempt.wrong_answer" and e["solve_id"] == outcome.solve_id
    )
    assert logged["prover"] == liar and logged["message"].startswith("wrong answer:")


def test_a_model_check_that_takes_too_long_leaves_the_answer_unchecked(
    server: RunningServer, run
) -> None:
    content = "(declare-const x Int)\n(assert (< x 3))\n(check-sat)\n"
    outcome = solve(server, run, content, provers=["slow-check"])
    assert (outcome.verdict, outcome.grounds) == (Verdict.REFUTED, Grounds.UNCHECKED)
    assert server.prover_pids() == []  # the checker was stopped and reaped


def test_a_wrong_model_alone_gives_no_verdict(server: RunningServer, run) -> None:
    outcome = solve(server, run, UNSAT_CNF, provers=["dimacs-liar"])
    assert outcome.verdict is Verdict.ERROR
    assert outcome.winner == ""


@pytest.mark.parametrize("prover", ["minisat", "cadical", "cryptominisat", "picosat", "z3-dimacs"])
def test_a_sat_solvers_model_is_checked(server: RunningServer, run, prover: str) -> None:
    outcome = solve(server, run, "p cnf 3 2\n1 -2 0\n2 3 0\n", provers=[prover])
    assert outcome.verdict is Verdict.REFUTED
    assert outcome.grounds is Grounds.MODEL_CHECKED
    assert by_prover(outcome)[prover].grounds is Grounds.MODEL_CHECKED


@pytest.mark.parametrize("prover", ["z3", "cvc5"])
def test_an_smt_model_is_checked_by_the_other_solver(
    server: RunningServer, run, prover: str
) -> None:
    outcome = solve(server, run, (SAMPLES / "satisfiable.smt2").read_text(), provers=[prover])
    assert (outcome.verdict, outcome.grounds) == (Verdict.REFUTED, Grounds.MODEL_CHECKED)


def test_an_unsat_answer_without_a_proof_is_unchecked(server: RunningServer, run) -> None:
    outcome = solve(server, run, UNSAT_CNF, provers=["minisat"])
    assert (outcome.verdict, outcome.grounds) == (Verdict.PROVED, Grounds.UNCHECKED)


def test_a_drat_proof_is_checked(server: RunningServer, run) -> None:
    outcome = solve(
        server, run, (SAMPLES / "pigeonhole-6.cnf").read_text(), provers=["cadical-drat"]
    )
    assert (outcome.verdict, outcome.grounds) == (Verdict.PROVED, Grounds.PROOF_CHECKED)


def test_a_bad_drat_proof_is_a_wrong_answer(server: RunningServer, run) -> None:
    outcome = solve(server, run, "p cnf 2 1\n1 2 0\n", provers=["drat-liar"])
    lie = by_prover(outcome)["drat-liar"]
    assert (lie.outcome, lie.grounds) == (AttemptOutcome.PROVER_ERROR, Grounds.CERTIFICATE_FAILED)
    assert outcome.verdict is Verdict.ERROR


@pytest.mark.parametrize(
    ("strategy", "confirm"), [(Strategy.ALL, False), (Strategy.FIRST_WINS, True)]
)
def test_a_certified_answer_beats_an_uncertified_contradiction(
    server: RunningServer, run, strategy: Strategy, confirm: bool
) -> None:
    # The liar's unsat comes at once, with no proof; cadical's sat comes with a model that checks.
    outcome = solve(
        server,
        run,
        "p cnf 2 1\n1 2 0\n",
        provers=["unsat-liar", "cadical"],
        strategy=strategy,
        confirm=confirm,
    )
    assert (outcome.verdict, outcome.winner) == (Verdict.REFUTED, "cadical")
    assert outcome.grounds is Grounds.MODEL_CHECKED
    assert outcome.conflict is None
    assert outcome.disagreement
    assert by_prover(outcome)["unsat-liar"].grounds is Grounds.UNCHECKED


def test_first_wins_takes_an_unchecked_first_answer_unless_confirm_is_asked(
    server: RunningServer, run
) -> None:
    outcome = solve(server, run, UNSAT_CNF, provers=["minisat"])
    assert (outcome.verdict, outcome.grounds) == (Verdict.PROVED, Grounds.UNCHECKED)
    confirmed = solve(server, run, UNSAT_CNF, provers=["minisat", "cadical"], confirm=True)
    assert (confirmed.verdict, confirmed.grounds) == (Verdict.PROVED, Grounds.CONFIRMED)
    alone = solve(server, run, UNSAT_CNF, provers=["minisat"], confirm=True)
    assert (alone.verdict, alone.grounds) == (Verdict.UNKNOWN, Grounds.NONE)


# --- the checkers on their own ------------------------------------------------------------


def test_dimacs_models() -> None:
    problem = b"c a comment\np cnf 3 2\n1 -2 0\n2 3 0\n"
    assert check_dimacs_model(problem, "s SATISFIABLE\nv 1 2 -3 0\n") == (Grounds.MODEL_CHECKED, "")
    assert check_dimacs_model(problem, "SAT\n1 2 -3 0\n") == (Grounds.MODEL_CHECKED, "")
    assert check_dimacs_model(problem, "s SATISFIABLE\nv 1 2 -3\n") == (Grounds.MODEL_CHECKED, "")
    failed = check_dimacs_model(problem, "v -1 2 -3 0\n")
    assert failed is not None and failed[0] is Grounds.CERTIFICATE_FAILED
    assert "clause 1" in failed[1]
    both_ways = check_dimacs_model(problem, "v 1 -1 2 0\n")
    assert both_ways is not None and both_ways[0] is Grounds.CERTIFICATE_FAILED
    assert check_dimacs_model(problem, "v 1 0\n") == (Grounds.UNCHECKED, "")  # partial
    assert check_dimacs_model(problem, "s SATISFIABLE\n") is None  # no model printed


def test_the_drat_checker_accepts_a_real_proof_and_rejects_a_bad_lemma(tmp_path: Path) -> None:
    problem = (SAMPLES / "pigeonhole-6.cnf").read_text()
    import subprocess

    proof = tmp_path / "proof.drat"
    subprocess.run(
        ["cadical", "-q", "-n", "--no-binary", str(SAMPLES / "pigeonhole-6.cnf"), str(proof)],
        check=False,
        capture_output=True,
    )
    verified, _why = check_drat(problem, proof.read_text())
    assert verified
    assert check_drat(problem, "1 2 3 0\n") == (
        False,
        "lemma 1 (1 2 3 0) is neither RUP nor RAT",
    )
    assert not check_drat("p cnf 2 1\n1 2 0\n", "0\n")[0]


def test_an_smt_model_replaces_the_declarations_it_defines() -> None:
    script = read_script(
        "(set-logic ALL)(declare-sort U 0)(declare-const a U)(declare-const b U)"
        "(declare-const x Int)(assert (distinct a b))(assert (> x 2))(check-sat)(get-model)"
    )
    z3_model = read_model(
        "sat\n(\n  (declare-fun U!val!0 () U)\n  (declare-fun U!val!1 () U)\n"
        "  (forall ((x U)) (or (= x U!val!0) (= x U!val!1)))\n"
        "  (define-fun a () U U!val!0)\n  (define-fun b () U U!val!1)\n"
        "  (define-fun x () Int 3)\n)\n"
    )
    assert z3_model is not None
    check = check_script(script, z3_model)
    assert "(declare-const U!val!0 U)" in check
    assert "(assert (distinct U!val!0 U!val!1))" in check
    assert "(define-fun x () Int 3)" in check and "declare-const x" not in check
    assert check.count("(check-sat)") == 1 and "get-model" not in check
    cvc5_model = read_model("sat\n(\n(define-fun a () U (as @U_0 U))\n(define-fun x () Int 3)\n)")
    assert cvc5_model is not None
    assert "(declare-const |model element U_0| U)" in check_script(script, cvc5_model)
