"""The full-size soak: many solves with random cancels against one server, then a count of
whatever was left behind (processes, descriptors, scratch files) and of memory over time.

Usage: python bench/soak.py [--solves 10000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import Callable
from pathlib import Path

import capnp

# `tests.support` lives in the checkout, beside bench/, not in the installed package.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.server import RunningServer, running_server  # noqa: E402
from tests.support.soak import SoakProblems, soak  # noqa: E402

SAMPLES = REPO / "samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solves", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    problems = SoakProblems(
        easy_smt=(SAMPLES / "distinct.smt2").read_text(),
        medium_cnf=(SAMPLES / "pigeonhole-6.cnf").read_text(),
        hard_cnf=(SAMPLES / "pigeonhole-12.cnf").read_text(),
    )
    with running_server(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]) as server:
        run(server, problems, args.solves, args.concurrency)


def run(server: RunningServer, problems: SoakProblems, solves: int, concurrency: int) -> None:
    def go(
        count: int, seed: int, on_batch: Callable[[int], None] = lambda _n: None
    ) -> list[str | None]:
        verdicts: list[str | None] = asyncio.run(
            capnp.run(soak(server.address, problems, count, seed, concurrency, on_batch))
        )
        return verdicts

    go(32, seed=1)  # warm up
    server.wait_for_events(lambda e: e["event"] == "connection.closed", 1)
    fds, rss0 = server.fd_count(), server.rss_bytes()
    samples: list[tuple[int, int]] = [(0, rss0)]
    step = max(concurrency, solves // 20)

    def sample(done: int) -> None:
        if done % step < concurrency:
            samples.append((done, server.rss_bytes()))
            if sys.stdout.isatty():
                print(f"\r{done}/{solves} solves, RSS {samples[-1][1] / 2**20:.1f} MiB", end="")

    start = time.monotonic()
    verdicts = go(solves, seed=2, on_batch=sample)
    elapsed = time.monotonic() - start
    server.wait_for_events(lambda e: e["event"] == "connection.closed", 2)
    started = sum(1 for e in server.log_events() if e["event"] == "solve.started")
    server.wait_for_events(lambda e: e["event"] == "solve.finished", started, timeout=120)
    rss_end = server.rss_bytes()
    print()
    print(f"solves: {len(verdicts)} in {elapsed:.0f} s ({len(verdicts) / elapsed:.0f}/s)")
    counts = collections.Counter(v or "dropped" for v in verdicts)
    print("ends:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"prover processes left: {len(server.prover_pids())}")
    print(f"descriptors: {fds} before, {server.fd_count()} after")
    print(f"scratch entries left: {len(list(server.temp_root().iterdir()))}")
    peak = max(r for _, r in samples)
    print(
        f"RSS: {rss0 / 2**20:.1f} MiB after warm-up, peak {peak / 2**20:.1f} MiB, "
        f"{rss_end / 2**20:.1f} MiB at the end ({(rss_end - rss0) / 2**20:+.1f} MiB)"
    )
    print("RSS over the run (solves: MiB):", " ".join(f"{n}:{r / 2**20:.1f}" for n, r in samples))


if __name__ == "__main__":
    main()
