"""Many solves with cancels at random moments leave nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import random

from proofrace.client import Client, Verdict

from harness import SAMPLES, RunningServer

EASY = (SAMPLES / "distinct.smt2").read_text()
MEDIUM = (SAMPLES / "pigeonhole-6.cnf").read_text()
HARD = (SAMPLES / "pigeonhole-12.cnf").read_text()

SOLVES = 200
CONCURRENCY = 8


async def one_solve(client: Client, rng: random.Random) -> Verdict | None:
    """One solve ended in one of several ways; returns the verdict when the result was read."""
    way = rng.choice(["finish", "finish-sat", "pipelined-cancel", "cancel-later", "drop-later"])
    if way == "finish":
        job = await client.solve(EASY, provers=["z3", "cvc5"])
        return (await job.result()).verdict
    if way == "finish-sat":
        job = await client.solve(MEDIUM)
        return (await job.result()).verdict
    job = await client.solve(HARD, provers=["cadical", "minisat"])
    if way == "pipelined-cancel":
        await job.cancel("soak")
        return (await job.result()).verdict
    with contextlib.suppress(TimeoutError):  # giving up on result() must not end the race
        await asyncio.wait_for(job.result(), timeout=rng.uniform(0, 0.05))
    if way == "cancel-later":
        await job.cancel("soak")
        return (await job.result()).verdict
    job.release()
    return None


async def soak(address: str, count: int, seed: int) -> list[Verdict | None]:
    rng = random.Random(seed)
    results: list[Verdict | None] = []
    async with Client.connect(address) as client:
        for start in range(0, count, CONCURRENCY):
            batch = [one_solve(client, rng) for _ in range(min(CONCURRENCY, count - start))]
            results += await asyncio.gather(*batch)
        await client.provers()  # the last Releases have been processed
    return results


def wait_idle(server: RunningServer, connections: int) -> None:
    """Every connection so far closed, every solve finished."""
    server.wait_for_events(lambda e: e["event"] == "connection.closed", connections)
    started = sum(1 for e in server.log_events() if e["event"] == "solve.started")
    server.wait_for_events(lambda e: e["event"] == "solve.finished", started)


def test_random_cancels_leak_no_process_fd_tempdir_or_memory(
    own_server: RunningServer, run
) -> None:
    server = own_server
    run(soak(server.address, 16, seed=1))  # warm up: imports, caches, allocator pools
    wait_idle(server, connections=1)
    fds, rss = server.fd_count(), server.rss_bytes()

    verdicts = run(soak(server.address, SOLVES, seed=2))
    wait_idle(server, connections=2)

    assert len(verdicts) == SOLVES
    assert Verdict.PROVED in verdicts and Verdict.CANCELLED in verdicts
    assert server.prover_pids() == []
    assert server.fd_count() == fds
    assert list(server.temp_root().iterdir()) == []
    growth = server.rss_bytes() - rss
    assert growth < 32 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert server.metric("proofrace_attempts_in_flight") == 0
    assert server.metric("proofrace_solves_in_flight") == 0
