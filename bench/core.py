"""Core figures of the service, measured side by side in one run on this machine.

1. Preemption: a running race of 1, 4 and 8 real SAT attempts (a diversified cadical/minisat
   portfolio on a hard pigeonhole problem) is cancelled. Measured: the client's cancel call
   until result() answers (every process reaped), and the server's own trigger-to-reaped
   latency of the slowest attempt.
2. Dropping the handle (Python client): from the moment the job is dropped until the server
   records the cancel, and until every process is reaped (read off the server's log).
3. Overhead: a trivial problem solved through the service (one prover) against running the
   same prover binary directly, sequentially.
4. Remote workers: the same 8-attempt preemption with every attempt on one of two worker
   processes (4 slots each) that registered with a dispatcher running nothing itself. On one
   machine the network is loopback; the path (a cancelled call, a report back) is the same.

Usage: python bench/core.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import capnp

from proofrace.client import Client, SolveState

# `tests.support` lives in the checkout, beside bench/, not in the installed package.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.server import RunningServer, event_unix_ns, running_server  # noqa: E402

T = TypeVar("T")
HARD = (REPO / "samples" / "pigeonhole-12.cnf").read_text()
TRIVIAL = REPO / "samples" / "distinct.smt2"

# Eight members of a SAT portfolio: two solvers, four random seeds each.
PORTFOLIO = [f"cadical-{i}" for i in range(4)] + [f"minisat-{i}" for i in range(4)]


def portfolio_registry(path: Path) -> Path:
    tables = []
    for i in range(4):
        tables.append(
            f'[cadical-{i}]\ncommand = ["cadical", "-q", "-n", "--seed={i}", "{{input}}"]\n'
            'formats = ["dimacs"]\ndefault = false\n'
            "rules = [['^s UNSATISFIABLE$', \"proved\"], ['^s SATISFIABLE$', \"refuted\"]]\n"
        )
        tables.append(
            f'[minisat-{i}]\ncommand = ["minisat", "-verb=0", "-rnd-freq=0.02", '
            f'"-rnd-seed={i + 1}", "{{input}}"]\nformats = ["dimacs"]\ndefault = false\n'
            "rules = [['^UNSATISFIABLE$', \"proved\"], ['^SATISFIABLE$', \"refuted\"]]\n"
        )
    path.write_text("\n".join(tables))
    return path


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return f"{pick(0.5):8.2f} {pick(0.9):8.2f} {pick(0.99):8.2f} {ordered[-1]:8.2f}"


async def preemption(address: str, attempts: int, runs: int) -> tuple[list[float], list[float]]:
    to_result, server_side = [], []
    async with Client.connect(address) as client:
        for _ in range(runs):
            job = await client.solve(HARD, provers=PORTFOLIO[:attempts])
            while True:  # until every attempt's process runs
                status = await job.status()
                if all(a.state.value == "running" for a in status.attempts):
                    break
                await asyncio.sleep(0.005)
            start = time.perf_counter()
            await job.cancel("benchmark")
            outcome = await job.result()
            to_result.append((time.perf_counter() - start) * 1e3)
            assert status.state is SolveState.RUNNING
            server_side.append(max(a.stop.latency_ns for a in outcome.attempts if a.stop) / 1e6)
    return to_result, server_side


async def drop_latency(server: RunningServer, runs: int) -> tuple[list[float], list[float]]:
    to_cancel, to_reaped = [], []
    async with Client.connect(server.address) as client:
        for _ in range(runs):
            job = await client.solve(HARD, provers=PORTFOLIO[:2])
            status = await job.status()
            while not all(a.state.value == "running" for a in status.attempts):
                await asyncio.sleep(0.005)
                status = await job.status()
            dropped_ns = time.time_ns()
            job.release()
            del job
            await client.provers()  # the Release left before this call
            cancelled = server.cancel_requested(status.solve_id)
            finished = server.solve_finished(status.solve_id)
            assert cancelled["cause"] == "tokenDropped"
            to_cancel.append((event_unix_ns(cancelled) - dropped_ns) / 1e6)
            to_reaped.append((event_unix_ns(finished) - dropped_ns) / 1e6)
    return to_cancel, to_reaped


async def through_service(address: str, runs: int) -> list[float]:
    content = TRIVIAL.read_text()
    times = []
    async with Client.connect(address) as client:
        for _ in range(runs):
            start = time.perf_counter()
            job = await client.solve(content, provers=["z3"])
            outcome = await job.result()
            times.append((time.perf_counter() - start) * 1e3)
            assert outcome.winner == "z3"
    return times


def direct(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(["z3", "-smt2", str(TRIVIAL)], capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1e3)
        assert done.stdout.strip() == b"unsat"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    runs = args.runs

    with tempfile.TemporaryDirectory() as tmp, running_server(
        [
            "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
            "--provers-file", str(portfolio_registry(Path(tmp) / "portfolio.toml")),
        ]
    ) as server:  # fmt: skip

        def run(coroutine: Coroutine[Any, Any, T]) -> T:
            result: T = asyncio.run(capnp.run(coroutine))
            return result

        print(f"proofrace core benchmark: {runs} runs each, ms")
        print()
        print("Preemption of a running race (cancel call -> every process reaped)")
        print(f"{'attempts':>8}  {'measured at':<26} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
        for attempts in (1, 4, 8):
            to_result, server_side = run(preemption(server.address, attempts, runs))
            print(f"{attempts:>8}  {'client: cancel -> result':<26} {percentiles(to_result)}")
            print(f"{'':>8}  {'server: trigger -> reaped':<26} {percentiles(server_side)}")
        print()
        print("Dropping the handle (Python client, 2 attempts running)")
        to_cancel, to_reaped = run(drop_latency(server, runs))
        print(f"{'':10}{'drop -> cancel recorded':<26} {percentiles(to_cancel)}")
        print(f"{'':10}{'drop -> all reaped':<26} {percentiles(to_reaped)}")
        print()
        print("Overhead on a trivial problem (z3, distinct.smt2), sequential")
        service = run(through_service(server.address, runs))
        plain = direct(runs)
        p50_service, p50_plain = statistics.median(service), statistics.median(plain)
        print(f"{'':10}{'':26} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
        print(f"{'':10}{'z3 run directly':<26} {percentiles(plain)}")
        print(f"{'':10}{'through proofrace':<26} {percentiles(service)}")
        print(
            f"{'':10}overhead at p50: {p50_service - p50_plain:+.2f} ms "
            f"({p50_service / p50_plain:.2f}x the direct run)"
        )
        print()
        registry = str(Path(tmp) / "portfolio.toml")
        with remote_cluster(registry) as dispatcher:
            print("Preemption across remote workers (2 workers x 4 slots, 8 attempts)")
            to_result, server_side = run(preemption(dispatcher.address, 8, runs))
            print(f"{'':10}{'client: cancel -> result':<26} {percentiles(to_result)}")
            print(f"{'':10}{'dispatcher: trigger -> all':<26} {percentiles(server_side)}")


@contextlib.contextmanager
def remote_cluster(registry: str) -> Iterator[RunningServer]:
    common = ["--metrics", "127.0.0.1:0", "--provers-file", registry]
    with contextlib.ExitStack() as stack:
        dispatcher = stack.enter_context(
            running_server(["--listen", "127.0.0.1:0", "--local-slots", "0", *common])
        )
        for name in ("w1", "w2"):
            worker_args = ["--dispatcher", dispatcher.address, "--name", name, "--slots", "4"]
            stack.enter_context(running_server([*worker_args, *common], command="worker"))
        dispatcher.wait_for_events(lambda e: e["event"] == "worker.registered", 2)
        yield dispatcher


if __name__ == "__main__":
    main()
