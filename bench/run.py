"""The benchmark harness: every measurement in one run on this machine, then the report.

Usage: python -m bench [--smoke] [--corpus DIR] [--out DIR] [--timeout S] [--runs N]

1. the portfolio study on the corpus (assembled first if its manifest is missing);
2. preemption latency: proofrace, the 100 ms polling flag, pySMT's Portfolio;
3. the service's overhead: trivial solves, solve rate, memory.
Writes results.json, report.md and the plots into --out (default: docs/bench).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import capnp

from bench import core, machine, overhead, registry
from bench.corpus import Manifest, default_cache, families
from bench.corpus.build import SOURCES, assemble
from bench.plan import FULL, SMOKE, Plan
from bench.portfolio import study
from bench.preemption import measure as preemption
from bench.progress import Progress
from bench.report import write_report
from tests.support.server import RunningServer, running_server

DOCS = Path(__file__).resolve().parent.parent / "docs" / "bench"


def _corpus(directory: Path, smoke: bool) -> Manifest:
    try:
        return Manifest.load(directory)
    except FileNotFoundError:
        if smoke:
            return assemble(directory, ["genhard"], families.TINY_SIZES)
        return assemble(directory, SOURCES)


@dataclasses.dataclass(frozen=True)
class Files:
    corpus: Path
    registry: Path  # the server's extra prover entries
    hard: Path  # a problem no attempt finishes while a cancel is measured


async def _measure_all(
    server: RunningServer,
    files: Files,
    manifest: Manifest,
    plan: Plan,
    progress: Progress,
) -> dict[str, Any]:
    portfolio = await study(
        server.address, files.corpus, manifest.instances, plan.timeout_s, progress
    )
    latencies = await preemption.measure(
        server,
        files.registry,
        files.hard,
        files.corpus / plan.smt_problem,
        plan.attempts,
        plan.latency_runs,
        plan.first_success_runs,
        progress,
    )
    return {
        "portfolio": [r.to_json() for r in portfolio],
        "latency": latencies.to_json(),
        "overhead": await overhead.measure(server, plan, progress),
    }


def run(plan: Plan, corpus_dir: Path, out: Path, smoke: bool) -> Path:
    started = time.monotonic()
    when = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    described = machine.describe()
    manifest = _corpus(corpus_dir, smoke)
    steps = (
        len(manifest.instances)
        + preemption.steps(plan.attempts, plan.latency_runs, plan.first_success_runs)
        + overhead.STEPS
    )
    with (
        tempfile.TemporaryDirectory(prefix="proofrace-bench-") as scratch,
        Progress(steps) as progress,
    ):
        hard = Path(scratch) / "pigeonhole-12.cnf"  # the polling workers read it from a file
        hard.write_text(core.HARD)
        files = Files(corpus_dir, registry.write(Path(scratch) / "bench-provers.toml"), hard)
        with running_server(
            [
                "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                "--provers-file", str(files.registry),
            ]
        ) as server:  # fmt: skip
            measured = asyncio.run(capnp.run(_measure_all(server, files, manifest, plan, progress)))
    results = {
        "generated": when.isoformat(),
        "duration_s": round(time.monotonic() - started, 1),
        "smoke": smoke,
        "plan": dataclasses.asdict(plan),
        "machine": {**described, "load_at_end": machine.load()},
        "corpus": {"directory": str(corpus_dir), "sources": manifest.sources},
        **measured,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return write_report(json.loads((out / "results.json").read_text()), out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny corpus, few runs (for CI)")
    parser.add_argument("--corpus", type=Path, default=None, help=f"default: {default_cache()}")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: docs/bench (smoke: a new temp dir)"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds per prover")
    parser.add_argument("--runs", type=int, default=None, help="races per latency cell")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.timeout is not None:
        plan = dataclasses.replace(plan, timeout_s=args.timeout)
    if args.runs is not None:
        plan = dataclasses.replace(plan, latency_runs=args.runs)
    # A smoke run never overwrites the real report, nor uses the real corpus.
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="proofrace-bench-smoke-")) if args.smoke else DOCS
    )
    corpus_dir = args.corpus or (out / "corpus" if args.smoke else default_cache())
    report = run(plan, corpus_dir, out, args.smoke)
    print(f"report: {report}")
