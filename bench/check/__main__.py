"""The check corpus: assemble it, run it through a server, measure certification, report.

Usage:
  python -m bench.check corpus [--dir DIR] [--smoke]
  python -m bench.check run --label NAME [--dir DIR] [--confirm] [--timeout S] [--out DIR]
  python -m bench.check cost [--dir DIR] [--out DIR]
  python -m bench.check report [--out DIR]

`run` starts a server with the interpreter it runs under: to measure an older checkout, run
this module with that checkout's interpreter and this one's `bench` on PYTHONPATH.
Results go to --out (default docs/bench/check/), the report to docs/bench/check.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.check import corpus as check_corpus
from bench.check import run as runner
from bench.corpus.manifest import default_cache

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "bench"


def _default_dir() -> Path:
    explicit = os.environ.get("PROOFRACE_CHECK_CORPUS")
    return Path(explicit) if explicit else default_cache().parent / "check-corpus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("corpus")
    build.add_argument("--dir", type=Path, default=None)
    build.add_argument("--smoke", action="store_true")
    run = commands.add_parser("run")
    run.add_argument("--dir", type=Path, default=None)
    run.add_argument("--label", required=True)
    run.add_argument("--confirm", action="store_true")
    run.add_argument("--timeout", type=float, default=20.0)
    run.add_argument("--out", type=Path, default=DOCS / "check")
    cost = commands.add_parser("cost")
    cost.add_argument("--dir", type=Path, default=None)
    cost.add_argument("--out", type=Path, default=DOCS / "check")
    report = commands.add_parser("report")
    report.add_argument("--out", type=Path, default=DOCS / "check")
    args = parser.parse_args()

    directory = getattr(args, "dir", None) or _default_dir()
    if args.command == "corpus":
        check_corpus.assemble(directory, smoke=args.smoke)
    elif args.command == "run":
        _run(directory, args.label, args.confirm, args.timeout, args.out)
    elif args.command == "cost":
        from bench.check import cost as certification

        certification.measure(directory, args.out / "cost.json")
    else:
        from bench.check import report as reporting

        reporting.write(args.out, DOCS / "check.md")


def _run(directory: Path, label: str, confirm: bool, timeout_s: float, out: Path) -> None:
    from tests.support.server import running_server

    manifest = runner.load_manifest(directory)
    args = ["--listen", "127.0.0.1:0", "--metrics", ""]
    with running_server(args) as server:
        results = runner.run_sync(server.address, directory, manifest.instances, timeout_s, confirm)
    settings = {"strategy": "firstWins", "confirm": confirm, "timeout_s": timeout_s}
    runner.save(out / f"{label}.json", label, settings, results)
    print(f"{label}: {runner.counts(results)}")


if __name__ == "__main__":
    main()
