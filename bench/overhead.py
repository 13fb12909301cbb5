"""What the service costs: a trivial solve through it against the prover run directly, solves
per second at several client concurrencies, and the server's memory per idle connection and
per in-flight solve."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import core
from bench.plan import Plan
from bench.preemption.service import until_running
from bench.progress import Progress
from proofrace.client import Client, Job
from tests.support.server import RunningServer

STEPS = 3  # for the progress bar


async def measure(server: RunningServer, plan: Plan, progress: Progress) -> dict[str, Any]:
    progress.section("overhead: trivial solves")
    service_ms = await core.through_service(server.address, plan.trivial_runs)
    direct_ms = await asyncio.to_thread(core.direct, plan.trivial_runs)
    progress.step()
    progress.section("overhead: solve rate")
    rates: dict[str, dict[int, float]] = {"service": {}, "direct": {}}
    for clients in plan.clients:  # the two side by side at each level
        rates["service"][clients] = await service_rate(server.address, clients, plan.rate_seconds)
        rates["direct"][clients] = await asyncio.to_thread(direct_rate, clients, plan.rate_seconds)
    progress.step()
    progress.section("overhead: memory")
    memory = {
        "idle_connections": plan.idle_connections,
        "idle_connection_bytes": await idle_connection_bytes(server, plan.idle_connections),
        "inflight_solves": plan.inflight_solves,
        "inflight_solve_bytes": await inflight_solve_bytes(server, plan.inflight_solves, "sleeper"),
    }
    progress.step()
    return {
        "trivial": {"service_ms": service_ms, "direct_ms": direct_ms},
        "rate": rates,
        "memory": memory,
    }


# A satisfiable two-clause CNF: minisat answers it in about a millisecond, so the figure is
# the service's capacity, not the prover's.
TINY_CNF = "p cnf 2 2\n1 2 0\n-1 0\n"


async def _solve_loop(address: str, until: float) -> int:
    done = 0
    async with Client.connect(address) as client:
        while time.perf_counter() < until:
            job = await client.solve(TINY_CNF, provers=["minisat"], time_limit=30)
            outcome = await job.result()
            if outcome.winner != "minisat":
                raise RuntimeError(f"trivial solve failed: {outcome.verdict}")
            done += 1
    return done


async def service_rate(address: str, clients: int, seconds: float) -> float:
    """Solves per second with `clients` connections, each solving one problem after another."""
    start = time.perf_counter()
    counts = await asyncio.gather(*(_solve_loop(address, start + seconds) for _ in range(clients)))
    return sum(counts) / (time.perf_counter() - start)


def direct_rate(clients: int, seconds: float) -> float:
    """The same with the binary run directly by `clients` threads: the ceiling."""
    with tempfile.TemporaryDirectory() as tmp:
        problem = Path(tmp) / "tiny.cnf"
        problem.write_text(TINY_CNF)
        counts = [0] * clients
        start = time.perf_counter()
        until = start + seconds

        def loop(index: int) -> None:
            while time.perf_counter() < until:
                subprocess.run(
                    ["minisat", "-verb=0", str(problem)], capture_output=True, check=False
                )
                counts[index] += 1

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.perf_counter() - start)


async def idle_connection_bytes(server: RunningServer, connections: int) -> float:
    """Server RSS growth per open, idle connection (each made one call, then waits)."""
    await _open_and_close(server.address, connections)  # warm the allocator first
    before = server.rss_bytes()
    clients = [await Client.connect(server.address) for _ in range(connections)]
    await asyncio.gather(*(c.provers() for c in clients))
    after = server.rss_bytes()
    for client in clients:
        await client.close()
    return float(after - before) / connections


async def _open_and_close(address: str, connections: int) -> None:
    clients = [await Client.connect(address) for _ in range(connections)]
    await asyncio.gather(*(c.provers() for c in clients))
    for client in clients:
        await client.close()


async def inflight_solve_bytes(server: RunningServer, solves: int, prover: str) -> float:
    """Server RSS growth per solve in flight. `prover` only sleeps: no CPU is used, and only
    the server's own bookkeeping is counted (a prover's memory is its own process's)."""
    async with Client.connect(server.address) as client:
        await _cancel_all(await _start(client, solves, prover))  # warm-up round
        before = server.rss_bytes()
        jobs = await _start(client, solves, prover)
        after = server.rss_bytes()
        await _cancel_all(jobs)
    return float(after - before) / solves


async def _start(client: Client, solves: int, prover: str) -> list[Job]:
    jobs = [await client.solve(TINY_CNF, provers=[prover], time_limit=300) for _ in range(solves)]
    for job in jobs:
        await until_running(job)
    return jobs


async def _cancel_all(jobs: list[Job]) -> None:
    for job in jobs:
        await job.cancel("benchmark")
        await job.result()
