"""Preemption through the proofrace service, as a client sees it.

- cancel: the client's `cancel` call until `result()` answers, which it does only once every
  attempt's process is reaped (so this includes a round trip on top of the stop itself);
- drop: the client releases its token until the server logs the solve finished (every process
  reaped), read off the server's JSON log, whose clock is the same machine's;
- first success: the server's own trigger (the winner's answer read, its process reaped) until
  the last loser is reaped, as the outcome reports it.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Sequence

from proofrace.client import CancelCause, Client, Job, SolveState
from tests.support.server import RunningServer


def _log_time_ns(timestamp: str) -> int:
    """A log line's UTC timestamp (microseconds) in the units of time.time_ns()."""
    moment = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


async def until_running(job: Job) -> None:
    while True:  # every attempt's process started: a stop now has real work to do
        status = await job.status()
        if all(a.state.value == "running" for a in status.attempts):
            return
        await asyncio.sleep(0.005)


async def cancel(
    address: str, problem: str, provers: Sequence[str], runs: int, tick: Callable[[], None]
) -> list[float]:
    latencies = []
    async with Client.connect(address) as client:
        for _ in range(runs):
            job = await client.solve(problem, provers=provers, time_limit=120)
            await until_running(job)
            start = time.perf_counter()
            status = await job.cancel("benchmark")
            outcome = await job.result()
            latencies.append((time.perf_counter() - start) * 1e3)
            if status.state is SolveState.FINISHED or outcome.cancel_reason is None:
                raise RuntimeError(f"the race ended before the cancel: {outcome.verdict}")
            tick()
    return latencies


async def drop(
    server: RunningServer,
    problem: str,
    provers: Sequence[str],
    runs: int,
    tick: Callable[[], None],
) -> list[float]:
    latencies = []
    async with Client.connect(server.address) as client:
        for _ in range(runs):
            job = await client.solve(problem, provers=provers, time_limit=120)
            await until_running(job)
            solve_id = (await job.status()).solve_id
            dropped_ns = time.time_ns()
            job.release()
            del job
            await client.provers()  # the Release message left before this call's answer
            finished = server.solve_finished(solve_id)
            cancelled = server.cancel_requested(solve_id)
            if cancelled["cause"] != CancelCause.TOKEN_DROPPED.value:
                raise RuntimeError(f"expected a drop, the server saw {cancelled['cause']}")
            latencies.append((_log_time_ns(finished["timestamp"]) - dropped_ns) / 1e6)
            tick()
    return latencies


async def first_success(
    address: str,
    problem: str,
    winner: str,
    losers: Sequence[str],
    runs: int,
    tick: Callable[[], None],
) -> tuple[list[float], int]:
    """Returns the latencies and how many races were not won by `winner` with every loser
    still running (those are left out)."""
    latencies, spoiled = [], 0
    async with Client.connect(address) as client:
        for _ in range(runs):
            job = await client.solve(problem, provers=[winner, *losers], time_limit=120)
            outcome = await job.result()
            tick()
            stops = [a.stop for a in outcome.attempts if a.prover != winner]
            if outcome.winner != winner or any(
                s is None or s.reason.cause is not CancelCause.PREEMPTED for s in stops
            ):
                spoiled += 1
                continue
            latencies.append(max(s.latency_ns for s in stops if s is not None) / 1e6)
    return latencies, spoiled
