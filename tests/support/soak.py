"""A soak workload: many solves on one connection, each ended in one of several ways."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SoakProblems:
    easy_smt: str  # every SMT solver proves it in milliseconds
    medium_cnf: str  # SAT solvers prove it in milliseconds
    hard_cnf: str  # runs for minutes: only ever cancelled


async def soak_solve(client: Any, problems: SoakProblems, rng: random.Random) -> str | None:
    """One solve, ended in one of several ways; returns its verdict when the result was read."""
    way = rng.choice(["finish", "finish-sat", "pipelined-cancel", "cancel-later", "drop-later"])
    if way == "finish":
        job = await client.solve(problems.easy_smt, provers=["z3", "cvc5"])
        return str((await job.result()).verdict.value)
    if way == "finish-sat":
        job = await client.solve(problems.medium_cnf)
        return str((await job.result()).verdict.value)
    job = await client.solve(problems.hard_cnf, provers=["cadical", "minisat"])
    if way == "pipelined-cancel":
        await job.cancel("soak")
        return str((await job.result()).verdict.value)
    with contextlib.suppress(TimeoutError):  # giving up on result() must not end the race
        await asyncio.wait_for(job.result(), timeout=rng.uniform(0, 0.05))
    if way == "cancel-later":
        await job.cancel("soak")
        return str((await job.result()).verdict.value)
    job.release()
    return None


async def soak(
    address: str,
    problems: SoakProblems,
    count: int,
    seed: int,
    concurrency: int = 8,
    on_batch: Callable[[int], None] = lambda _done: None,
) -> list[str | None]:
    """`count` solves, `concurrency` at a time on one connection, ended at random moments."""
    from proofrace.client import Client

    rng = random.Random(seed)
    results: list[str | None] = []
    async with Client.connect(address) as client:
        for start in range(0, count, concurrency):
            batch = [
                soak_solve(client, problems, rng) for _ in range(min(concurrency, count - start))
            ]
            results += await asyncio.gather(*batch)
            on_batch(len(results))
        await client.provers()  # the last Releases have been processed
    return results
