"""Two versions of the server side by side in one run: this checkout against another
revision, on the same machine, in the same minutes, round by round.

Figures taken at different moments do not compare on a shared machine: the same code gave a
trivial solve of 6.1 ms in one run of bench/core.py and 8.8 ms in the next. Here both
servers run at once, with the same registry and the racing settings of bench/core.py, and
each round measures both, the one that goes first alternating:

- a trivial solve (minisat on a two-clause CNF), the median of `--solves` in turn;
- cancel → 8 reaped and drop → 8 reaped, the portfolio race of bench/core.py (the median of
  `--stops` of each);
- solves per second with 32 clients (`--each` solves each), and the server's CPU per solve
  meanwhile (user + system time from /proc, threads included, children not);
- with `--remote`, the dispatcher's CPU per remote attempt, two clusters of a dispatcher and
  two workers.

Each round starts every server afresh: a process keeps its own layout for life (hash seeds,
where its memory lands), and one instance can be a few per cent faster than another of the
same code. With the same two dispatchers kept for a whole run, two runs of one comparison
came out 1.09x in one and 0.93x in the other, each side "better" in nearly every round.

The base's `server/proofrace`, `client/python` and `schemas` come from `git archive` of a
revision, or from another checkout's directory; the sandbox launcher binary and the client
driving both servers are this checkout's.

Usage: python bench/ab.py --base REV [--rounds N] [--solves N] [--each N] [--stops N]
                          [--remote]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import core  # noqa: E402
from proofrace.client import Client  # noqa: E402
from tests.support.server import RunningServer, running_server  # noqa: E402

# Where each part of the package lives in the checkout (pyproject's package-dir).
_PARTS = {"server/proofrace": "", "client/python": "client", "schemas": "schemas"}
# Figures where less is better; the others (solves per second) more.
_LOWER_IS_BETTER = {"trivial solve, ms", "server CPU per solve, ms", "cancel → 8 reaped, ms",
                    "drop → 8 reaped, ms", "dispatcher CPU per remote attempt, ms"}  # fmt: skip


def base_package(base: str, into: Path) -> Path:
    """The `proofrace` package of `base` (a git revision of this checkout, or the directory
    of another checkout), laid out for PYTHONPATH; returns the directory to put on it."""
    tree = Path(base)
    if not tree.is_dir():
        tree = into / "tree"
        archive = into / "base.tar"
        with archive.open("wb") as out:
            subprocess.run(["git", "archive", base, *_PARTS], cwd=REPO, stdout=out, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
    lib = into / "lib"
    skip = shutil.ignore_patterns("__pycache__")
    for part, name in _PARTS.items():
        shutil.copytree(tree / part, lib / "proofrace" / name, ignore=skip)
    return lib


def _order(round_number: int) -> list[str]:
    """Which side goes first alternates from round to round."""
    return ["base", "this"] if round_number % 2 == 0 else ["this", "base"]


def _round(
    found: dict[str, dict[str, list[float]]],
    serve: list[str],
    environments: dict[str, dict[str, str]],
    order: list[str],
    args: argparse.Namespace,
    watcher: core.Watcher,
) -> None:
    """One round: both servers started afresh, then each measured in turn."""
    with contextlib.ExitStack() as stack:
        servers = {side: stack.enter_context(running_server(serve, environments[side]))
                   for side in order}  # fmt: skip
        for side in order:
            server = servers[side]
            record = found.setdefault
            record("trivial solve, ms", {}).setdefault(side, []).append(
                core._run(_trivial(server.address, args.solves))
            )
            # Before the load at 32 clients, which leaves the machine busier for a while.
            cancel, drop = core._run(_stops(server, watcher, args.stops))
            record("cancel → 8 reaped, ms", {}).setdefault(side, []).append(cancel)
            record("drop → 8 reaped, ms", {}).setdefault(side, []).append(drop)
            core._run(core.service_throughput(server.address, core.CLIENTS, 1))  # warm
            cpu_before = core.process_cpu_s(server.pid)
            rate = core._run(core.service_throughput(server.address, core.CLIENTS, args.each))
            cpu = (core.process_cpu_s(server.pid) - cpu_before) * 1e3
            record("solves/s at 32 clients", {}).setdefault(side, []).append(rate)
            record("server CPU per solve, ms", {}).setdefault(side, []).append(
                cpu / (core.CLIENTS * args.each)
            )


async def _trivial(address: str, solves: int) -> float:
    async with Client.connect(address) as client:
        await core.trivial_solve(client)  # warm
        return statistics.median([await core.trivial_solve(client) for _ in range(solves)])


async def _stops(server: RunningServer, watcher: core.Watcher, runs: int) -> tuple[float, float]:
    cancels, drops = [], []
    async with Client.connect(server.address) as client:
        await core.cancel_once(client, server, watcher)  # warm
        for _ in range(runs):
            cancels.append(await core.cancel_once(client, server, watcher))
            drops.append(await core.drop_once(client, server, watcher))
    return statistics.median(cancels), statistics.median(drops)


def table(found: dict[str, dict[str, list[float]]]) -> list[str]:
    """Medians per side, this checkout's over the base's, and how many rounds it did better."""
    lines = [f"{'':38} {'base':>9} {'this':>9} {'this/base':>10}  better in"]
    for figure, sides in found.items():
        base, this = sides["base"], sides["this"]
        lower = figure in _LOWER_IS_BETTER
        better = sum(1 for b, t in zip(base, this, strict=True) if (t < b if lower else t > b))
        b, t = statistics.median(base), statistics.median(this)
        lines.append(f"{figure:38} {b:9.2f} {t:9.2f} {t / b:9.2f}x  {better} of {len(base)} rounds")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a git revision, or a checkout's directory")
    parser.add_argument("--rounds", type=int, default=6, help="rounds (default 6)")
    parser.add_argument("--solves", type=int, default=60, help="trivial solves a round")
    parser.add_argument("--each", type=int, default=8, help="solves per client at 32 clients")
    parser.add_argument("--stops", type=int, default=5, help="cancels and drops a round")
    parser.add_argument("--remote", action="store_true", help="also the dispatcher's CPU")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        # The base runs its own package, put first on its PYTHONPATH; this side the installed one.
        environments = {"base": {"PYTHONPATH": str(base_package(args.base, Path(tmp)))}, "this": {}}
        registry = str(core.portfolio_registry(Path(tmp) / "portfolio.toml"))
        serve = ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--provers-file"]
        serve += [registry, "--config", str(core.racing_config(Path(tmp) / "racing.toml"))]
        found: dict[str, dict[str, list[float]]] = {}
        watcher = core.Watcher()
        try:
            for i in range(args.rounds):
                _round(found, serve, environments, _order(i), args, watcher)
        finally:
            watcher.close()
        if args.remote:
            _remote(found, registry, environments, args.rounds)

    print(f"{args.base} (base) against this checkout, {args.rounds} alternating rounds:")
    print("\n".join(table(found)))


def _remote(
    found: dict[str, dict[str, list[float]]],
    registry: str,
    environments: dict[str, dict[str, str]],
    rounds: int,
) -> None:
    figure = found.setdefault("dispatcher CPU per remote attempt, ms", {})
    for i in range(rounds):
        order = _order(i)
        with contextlib.ExitStack() as stack:
            clusters = {side: stack.enter_context(core.remote_cluster(registry, environments[side]))
                        for side in order}  # fmt: skip
            for side in order:
                cpu = core._run(core.dispatcher_cpu_per_attempt(clusters[side], 300))
                figure.setdefault(side, []).append(cpu)


if __name__ == "__main__":
    main()
