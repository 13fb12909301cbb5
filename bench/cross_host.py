"""Preemption across hosts: a dispatcher container and two worker containers on a Docker
network (each in its own network namespace), measured from the host.

For each run, a race of cadical and minisat on a hard problem starts, one attempt on each
worker; once both run, the client cancels. Measured: the client's cancel call until result()
answers (every worker process reaped and reported), and the dispatcher's own trigger to the
last worker's report.

Needs the images that `scripts/containers.sh build` makes.
Usage: python bench/cross_host.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import capnp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.core import percentiles  # noqa: E402
from proofrace.client import Client  # noqa: E402
from tests.containers.nodes import cluster  # noqa: E402

HARD = (REPO / "samples" / "pigeonhole-12.cnf").read_text()


async def measure(address: str, runs: int) -> tuple[list[float], list[float]]:
    to_result, dispatcher_side = [], []
    async with Client.connect(address) as client:
        for _ in range(runs):
            job = await client.solve(HARD, provers=["cadical", "minisat"])
            status = await job.status()
            while not all(a.state.value == "running" for a in status.attempts):
                await asyncio.sleep(0.005)  # only status() can tell
                status = await job.status()
            start = time.perf_counter()
            await job.cancel("benchmark")
            outcome = await job.result()
            to_result.append((time.perf_counter() - start) * 1e3)
            stops = [a.stop.latency_ns for a in outcome.attempts if a.stop is not None]
            assert len(stops) == 2, outcome
            dispatcher_side.append(max(stops) / 1e6)
    return to_result, dispatcher_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with cluster() as running:
        running.dispatcher(env={"PROOFRACE_LOCAL_SLOTS": "0"})
        running.worker("w1")
        running.worker("w2")
        to_result, dispatcher_side = asyncio.run(capnp.run(measure(running.address, args.runs)))
    print(f"preemption across containers, 2 attempts on 2 workers, {args.runs} runs, ms")
    print(f"{'':26} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    print(f"{'client: cancel -> result':<26} {percentiles(to_result)}")
    print(f"{'dispatcher: trigger -> all':<26} {percentiles(dispatcher_side)}")


if __name__ == "__main__":
    main()
