"""Every prover of the built-in registry, on real problems of its format with known answers:
its verdict rules read its own output, and its certificate (if any) is checked."""

from __future__ import annotations

import pytest

from proofrace.client import Client, Grounds, Verdict
from proofrace.core.model import SolveOutcome

from harness import REPO, SAMPLES, RunningServer

PITFALLS = REPO / "bench" / "check" / "pitfalls"

# prover -> (a problem it proves, a problem it refutes)
CASES = {
    "z3": (SAMPLES / "distinct.smt2", SAMPLES / "satisfiable.smt2"),
    "cvc5": (SAMPLES / "distinct.smt2", SAMPLES / "satisfiable.smt2"),
    "cvc4": (SAMPLES / "distinct.smt2", SAMPLES / "satisfiable.smt2"),
    "boolector": (PITFALLS / "bv-declare-const.smt2", PITFALLS / "bv-sat.smt2"),
    "cadical": (SAMPLES / "pigeonhole-6.cnf", PITFALLS / "satlib-percent.cnf"),
    "cadical-drat": (SAMPLES / "pigeonhole-6.cnf", PITFALLS / "satlib-percent.cnf"),
    "minisat": (SAMPLES / "pigeonhole-6.cnf", PITFALLS / "satlib-percent.cnf"),
    "cryptominisat": (PITFALLS / "clauses-across-lines.cnf", PITFALLS / "satlib-percent.cnf"),
    "picosat": (SAMPLES / "pigeonhole-6.cnf", PITFALLS / "satlib-percent.cnf"),
    "z3-dimacs": (SAMPLES / "pigeonhole-6.cnf", PITFALLS / "satlib-percent.cnf"),
    "eprover": (PITFALLS / "quoted-name.p", SAMPLES / "no-proof.p"),
    "spass": (SAMPLES / "socrates.p", SAMPLES / "no-proof.p"),
    "cvc5-tptp": (PITFALLS / "tff-arithmetic.p", PITFALLS / "tff-arithmetic-false.p"),
    "cvc4-tptp": (PITFALLS / "numbers-unequal.p", PITFALLS / "quoted-distinct-names.p"),
}
# What a refutation of each rests on: a model checked, or the prover's word.
MODEL_CHECKED = {"z3", "cvc5", "cadical", "cadical-drat", "minisat", "cryptominisat", "picosat"}
MODEL_CHECKED |= {"z3-dimacs"}


def solve(server: RunningServer, run, content: str, prover: str) -> SolveOutcome:
    async def scenario() -> SolveOutcome:
        async with Client.connect(server.address) as client:
            job = await client.solve(content, provers=[prover], time_limit=60)
            outcome: SolveOutcome = await job.result()
            return outcome

    result: SolveOutcome = run(scenario())
    return result


def test_every_built_in_prover_is_covered(server: RunningServer, run) -> None:
    async def names() -> set[str]:
        async with Client.connect(server.address) as client:
            return {p.name for p in await client.provers()}

    built_in = run(names()) - {"think", "deaf", "forker", "flooder", "liar", "attacker"}
    assert built_in == set(CASES)


@pytest.mark.parametrize("prover", sorted(CASES))
def test_a_prover_proves_and_refutes(server: RunningServer, run, prover: str) -> None:
    proves, refutes = CASES[prover]
    proved = solve(server, run, proves.read_text(), prover)
    assert (proved.verdict, proved.winner) == (Verdict.PROVED, prover), proved.attempts
    expected = Grounds.PROOF_CHECKED if prover == "cadical-drat" else Grounds.UNCHECKED
    assert proved.grounds is expected
    refuted = solve(server, run, refutes.read_text(), prover)
    assert (refuted.verdict, refuted.winner) == (Verdict.REFUTED, prover), refuted.attempts
    expected = Grounds.MODEL_CHECKED if prover in MODEL_CHECKED else Grounds.UNCHECKED
    assert refuted.grounds is expected
