"""The portfolio study: on every corpus instance, in one run and interleaved instance by
instance, so that a change in the machine's load touches every contender alike:
- sequential, the host's way today: one prover after another in a fixed order, each as a direct
  subprocess with the timeout, until one is decisive;
- each single prover, run directly (taken from the sequential run where it got that far);
- proofrace's `firstWins` race of the same provers, through the real service.
The best single prover and the virtual best solver (the per-instance oracle) are derived.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import direct
from bench.corpus import Instance
from bench.progress import Progress
from proofrace.client import Client
from proofrace.core.model import Verdict

# The provers raced per format, in the fixed order the sequential baseline tries them: the
# host's own order where it has one (z3 before cvc5, cadical before minisat, E first).
PROVERS = {
    "smtlib2": ["z3", "cvc5"],
    "dimacs": ["cadical", "minisat"],
    "tptp": ["eprover", "spass"],
}


@dataclass(frozen=True)
class Timed:
    answer: str  # proved | refuted | unknown | timeout | error
    seconds: float

    @property
    def solved(self) -> bool:
        return self.answer in ("proved", "refuted")


@dataclass(frozen=True)
class InstanceResult:
    instance: Instance
    single: dict[str, Timed]
    sequential: Timed
    portfolio: Timed
    winner: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceResult:
        return cls(
            instance=Instance(**data["instance"]),
            single={p: Timed(**t) for p, t in data["single"].items()},
            sequential=Timed(**data["sequential"]),
            portfolio=Timed(**data["portfolio"]),
            winner=data["winner"],
        )


def _verdict_answer(verdict: Verdict) -> str:
    return {Verdict.PROVED: "proved", Verdict.REFUTED: "refuted", Verdict.TIMEOUT: "timeout"}.get(
        verdict, "unknown" if verdict is Verdict.UNKNOWN else "error"
    )


async def study(
    address: str,
    corpus: Path,
    instances: list[Instance],
    limit_s: float,
    progress: Progress,
) -> list[InstanceResult]:
    registry = direct.registry()
    results = []
    async with Client.connect(address) as client:
        for instance in instances:
            progress.section(instance.name)
            problem = corpus / instance.path
            names = PROVERS[instance.format]
            specs = [registry.specs[name] for name in names]
            total, answer, runs = await asyncio.to_thread(
                direct.sequential, specs, problem, limit_s
            )
            single = {r.prover: Timed(r.answer, r.seconds) for r in runs}
            for spec in specs:  # those the sequential run did not reach
                if spec.name not in single:
                    run = await asyncio.to_thread(direct.run, spec, problem, limit_s)
                    single[spec.name] = Timed(run.answer, run.seconds)
            content = await asyncio.to_thread(problem.read_bytes)
            start = time.perf_counter()
            job = await client.solve(content, provers=names, time_limit=limit_s)
            outcome = await job.result()
            elapsed = time.perf_counter() - start
            results.append(
                InstanceResult(
                    instance=instance,
                    single=single,
                    sequential=Timed(answer, total),
                    portfolio=Timed(_verdict_answer(outcome.verdict), elapsed),
                    winner=outcome.winner,
                )
            )
            progress.step()
    return results
