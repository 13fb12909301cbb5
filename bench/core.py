"""Core figures of the service against the floor, measured side by side in one run.

1. Preemption against a bare kill loop, interleaved run by run. A race of the eight-member
   SAT portfolio (cadical and minisat, four seeds each) on pigeonhole-12 is ended by the
   client's cancel call, or by dropping the handle; a watcher process (not the server, not the
   client) sees the eight processes reaped. The bare loop spawns the same eight processes and
   SIGKILLs and reaps them with no RPC at all, seen by the same watcher. Trigger to the last
   reap, in each case.
2. Overhead against direct spawns at the same concurrency, interleaved: a trivial solve (one
   prover, minisat on a two-clause CNF) through the service against spawning minisat directly
   (median ratio); solves per second with 32 clients against 32 threads spawning directly.
3. The dispatcher's own CPU per remote attempt: a dispatcher with no local slots sends every
   attempt to two workers; its process CPU time (user + system, from /proc) over many
   one-attempt solves, divided by their number. Also the 8-attempt preemption across workers.
4. The prover sandbox: a trivial z3 run, and a bare `true`, spawned directly, through the
   launcher with rlimits only (sandbox = false), and fully confined (Landlock + seccomp),
   interleaved so that load falls on all three alike.

It prints ratios and the targets they are held to. `--runs` sets the runs per figure (a few
minutes at the default); `--json FILE` keeps the raw figures.

Usage: python bench/core.py [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import capnp

from proofrace.backends.process import Limits
from proofrace.backends.registry import Registry
from proofrace.backends.sandbox import Jail, find_launcher
from proofrace.client import Client, Job, SolveState

# `tests.support` lives in the checkout, beside bench/, not in the installed package.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.processes import marked_processes  # noqa: E402
from tests.support.server import RunningServer, running_server  # noqa: E402

T = TypeVar("T")
HARD_FILE = REPO / "samples" / "pigeonhole-12.cnf"
HARD = HARD_FILE.read_text()
TRIVIAL = REPO / "samples" / "distinct.smt2"
# Unsatisfiable in one propagation: minisat answers before it has finished starting.
TRIVIAL_CNF = "p cnf 1 2\n1 0\n-1 0\n"
TRIVIAL_PROVER = "minisat"
CLIENTS = 32
# Time the eight provers run before they are stopped, the same for the service and the floor.
SETTLE_S = 0.05

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


def pick(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def percentiles(values: list[float]) -> str:
    return " ".join(f"{pick(values, q):8.2f}" for q in (0.5, 0.9, 0.99, 1.0))


# --- helpers in their own processes -------------------------------------------------------


class Helper:
    """A line-driven helper process of bench/preemption/floor.py."""

    def __init__(self, *args: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.preemption.floor", *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()

    def read(self) -> str:
        assert self._process.stdout is not None
        return self._process.stdout.readline().strip()

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


class Watcher(Helper):
    def __init__(self) -> None:
        super().__init__("watch")

    def arm(self, pids: list[int]) -> None:
        self.send(" ".join(map(str, pids)))
        assert self.read() == "ready"

    def last_reaped_ns(self) -> int:
        return int(self.read())


class MinimalServer:
    """bench/preemption/minimal.py in its own process: a minimal pycapnp racing server, the
    floor for what any Python server on pycapnp pays (no sandbox, logs, metrics or checks)."""

    def __init__(self, registry_file: Path) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.preemption.minimal", str(registry_file)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.pid = self._process.pid
        self.address = f"127.0.0.1:{self._process.stdout.readline().split()[1]}"

    def prover_pids(self) -> list[int]:
        return marked_processes(f"PROOFRACE_OWNER={self.pid}-")

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(10)


def ms_since(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


# --- 1. preemption against the floor --------------------------------------------------------


async def _running_pids(server: RunningServer | MinimalServer, count: int) -> list[int]:
    """The server's prover processes, once all `count` of them run."""
    while True:
        pids = server.prover_pids()
        if len(pids) == count:
            return pids
        await asyncio.sleep(0.002)


async def _until_running(job: Job) -> None:
    while True:
        status = await job.status()
        if all(a.state.value == "running" for a in status.attempts):
            return
        await asyncio.sleep(0.002)


async def _started_race(
    client: Client, server: RunningServer | MinimalServer
) -> tuple[Job, list[int]]:
    job = await client.solve(HARD, provers=PORTFOLIO, time_limit=120)
    await _until_running(job)
    pids = await _running_pids(server, len(PORTFOLIO))
    return job, pids


async def cancel_once(
    client: Client, server: RunningServer | MinimalServer, watcher: Watcher
) -> float:
    job, pids = await _started_race(client, server)
    await asyncio.sleep(SETTLE_S)
    watcher.arm(pids)
    start = time.monotonic_ns()
    status = await job.cancel("benchmark")
    reaped = watcher.last_reaped_ns()
    outcome = await job.result()
    if status.state is SolveState.FINISHED or outcome.cancel_reason is None:
        raise RuntimeError(f"the race ended before the cancel: {outcome.verdict}")
    return ms_since(start, reaped)


async def drop_once(
    client: Client, server: RunningServer | MinimalServer, watcher: Watcher
) -> float:
    job, pids = await _started_race(client, server)
    solve_id = (await job.status()).solve_id
    await asyncio.sleep(SETTLE_S)
    watcher.arm(pids)
    start = time.monotonic_ns()
    job.release()
    del job
    await client.provers()  # the Release left before this call
    reaped = watcher.last_reaped_ns()
    if isinstance(server, RunningServer):  # the minimal server logs nothing to check against
        cancelled = server.cancel_requested(solve_id)
        if cancelled["cause"] != "tokenDropped":
            raise RuntimeError(f"expected a drop, the server saw {cancelled['cause']}")
        server.solve_finished(solve_id)
    return ms_since(start, reaped)


def bare_once(bare: Helper, watcher: Watcher) -> float:
    bare.send("spawn")
    pids = [int(p) for p in bare.read().split()]
    time.sleep(SETTLE_S)
    watcher.arm(pids)
    start = time.monotonic_ns()
    bare.send("kill")
    reaped = watcher.last_reaped_ns()
    assert bare.read() == "done"
    return ms_since(start, reaped)


async def preemption_vs_floor(
    server: RunningServer, minimal: MinimalServer, registry: Registry, workdir: Path, runs: int
) -> dict[str, list[float]]:
    argvs = [json.dumps(registry.specs[p].argv(str(HARD_FILE))) for p in PORTFOLIO]
    bare = Helper("bare", str(workdir), *argvs)
    watcher = Watcher()
    kinds = ["cancel", "drop", "bare", "minimal_cancel", "minimal_drop"]
    found: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        async with (
            Client.connect(server.address) as client,
            Client.connect(minimal.address) as floor,
        ):
            for i in range(runs):
                order = kinds[i % len(kinds) :] + kinds[: i % len(kinds)]  # nobody always first
                for what in order:
                    if what == "cancel":
                        found[what].append(await cancel_once(client, server, watcher))
                    elif what == "drop":
                        found[what].append(await drop_once(client, server, watcher))
                    elif what == "minimal_cancel":
                        found[what].append(await cancel_once(floor, minimal, watcher))
                    elif what == "minimal_drop":
                        found[what].append(await drop_once(floor, minimal, watcher))
                    else:
                        found[what].append(bare_once(bare, watcher))
    finally:
        bare.close()
        watcher.close()
    return found


# --- 2. overhead against direct spawns ----------------------------------------------------


async def trivial_solve(client: Client) -> float:
    start = time.perf_counter()
    job = await client.solve(TRIVIAL_CNF, provers=[TRIVIAL_PROVER], time_limit=30)
    outcome = await job.result()
    elapsed = (time.perf_counter() - start) * 1e3
    if outcome.winner != TRIVIAL_PROVER:
        raise RuntimeError(f"trivial solve failed: {outcome.verdict}")
    return elapsed


def direct_spawn(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1e3
    if b"UNSATISFIABLE" not in done.stdout:
        raise RuntimeError(f"direct run failed: {done.stdout[-200:]!r}")
    return elapsed


async def trivial_vs_direct(
    address: str, minimal: str, argv: list[str], runs: int
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"service": [], "direct": [], "minimal": []}
    async with Client.connect(address) as client, Client.connect(minimal) as floor:
        await trivial_solve(client)  # warm-up
        await trivial_solve(floor)
        for _ in range(runs):
            found["service"].append(await trivial_solve(client))
            found["direct"].append(direct_spawn(argv))
            found["minimal"].append(await trivial_solve(floor))
    return found


async def service_throughput(address: str, clients: int, each: int) -> float:
    """Solves per second: `clients` connections, each solving `each` trivial problems in turn."""

    async def one_client(client: Client) -> None:
        for _ in range(each):
            await trivial_solve(client)

    connections = [await Client.connect(address) for _ in range(clients)]
    try:
        start = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in connections))
        return clients * each / (time.perf_counter() - start)
    finally:
        for connection in connections:
            await connection.close()


def direct_throughput(argv: list[str], clients: int, each: int) -> float:
    """The same with `clients` threads spawning the prover directly."""

    def loop() -> None:
        for _ in range(each):
            direct_spawn(argv)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients * each / (time.perf_counter() - start)


async def throughput_vs_direct(
    address: str, minimal: str, argv: list[str], rounds: int, each: int
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"service": [], "direct": [], "minimal": []}
    for _ in range(rounds):
        found["service"].append(await service_throughput(address, CLIENTS, each))
        found["direct"].append(direct_throughput(argv, CLIENTS, each))
        found["minimal"].append(await service_throughput(minimal, CLIENTS, each))
    return found


# Kept for bench/overhead.py: the z3 demo problem, sequentially.
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


# --- 3. the dispatcher ------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU time of a process, its threads (live or ended) included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def dispatcher_cpu_per_attempt(dispatcher: RunningServer, attempts: int) -> float:
    """Milliseconds of the dispatcher's CPU per remote attempt (one-attempt trivial solves,
    eight at a time on one connection)."""
    async with Client.connect(dispatcher.address) as client:
        for _ in range(8):
            await trivial_solve(client)  # warm-up
        before = process_cpu_s(dispatcher.pid)
        pending = attempts
        while pending:
            batch = min(8, pending)
            await asyncio.gather(*(trivial_solve(client) for _ in range(batch)))
            pending -= batch
        return (process_cpu_s(dispatcher.pid) - before) * 1e3 / attempts


async def remote_preemption(address: str, runs: int) -> list[float]:
    """Cancel call until result() answers, 8 attempts spread over the workers."""
    times = []
    async with Client.connect(address) as client:
        for _ in range(runs):
            job = await client.solve(HARD, provers=PORTFOLIO, time_limit=120)
            await _until_running(job)
            start = time.perf_counter()
            await job.cancel("benchmark")
            await job.result()
            times.append((time.perf_counter() - start) * 1e3)
    return times


def racing_config(path: Path) -> Path:
    """Settings under which every solve races: no verdict cache to answer a repeated problem,
    and no joining of an identical race already running. The floor is about racing."""
    path.write_text('[server]\ncache = "off"\nshare_races = false\n')
    return path


@contextlib.contextmanager
def remote_cluster(
    registry: str, environment: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """A dispatcher with no local slots and two workers of four slots; `environment` is
    added to all three's."""
    config = str(racing_config(Path(registry).parent / "racing.toml"))
    common = ["--metrics", "127.0.0.1:0", "--provers-file", registry, "--config", config]
    env = {"PROOFRACE_WORKER_SECRET": "the benchmark's worker credential", **(environment or {})}
    with contextlib.ExitStack() as stack:
        dispatcher = stack.enter_context(
            running_server(["--listen", "127.0.0.1:0", "--local-slots", "0", *common], env)
        )
        for name in ("w1", "w2"):
            worker_args = ["--dispatcher", dispatcher.address, "--name", name, "--slots", "4"]
            stack.enter_context(running_server([*worker_args, *common], env, command="worker"))
        dispatcher.wait_for_events(lambda e: e["event"] == "worker.registered", 2)
        yield dispatcher


# --- 4. the sandbox ---------------------------------------------------------------------


def sandbox_cost(runs: int) -> dict[str, dict[str, list[float]]]:
    """Wall time of spawn to exit, in ms: {command: {way: times}}."""
    launcher = find_launcher()
    assert launcher is not None, "build proofrace-jail first (scripts/setup.sh)"
    limits = Limits(cpu_seconds=60, memory_bytes=8 << 30, file_bytes=1 << 30, grace_seconds=0.2)
    ways = {
        "direct": None,
        "launcher, rlimits only": Jail(launcher, confine=False),
        "sandboxed": Jail(launcher, confine=True),
    }
    commands = {"true": ["true"], "z3 distinct.smt2": ["z3", "-smt2", "problem.smt2"]}
    times: dict[str, dict[str, list[float]]] = {c: {w: [] for w in ways} for c in commands}
    with tempfile.TemporaryDirectory() as workdir:
        (Path(workdir) / "problem.smt2").write_text(TRIVIAL.read_text())
        for _ in range(runs):
            for command, argv in commands.items():
                for way, jail in ways.items():
                    line = argv if jail is None else jail.command(argv, Path(workdir), limits)
                    start = time.perf_counter()
                    subprocess.run(line, cwd=workdir, capture_output=True, check=True)
                    times[command][way].append((time.perf_counter() - start) * 1e3)
    return times


# --- the run ----------------------------------------------------------------------------


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    result: T = asyncio.run(capnp.run(coroutine))
    return result


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per figure (default 30)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    runs = args.runs
    figures: dict[str, Any] = {"runs": runs, "load_before": os.getloadavg()}

    with tempfile.TemporaryDirectory() as tmp:
        registry_file = portfolio_registry(Path(tmp) / "portfolio.toml")
        registry = Registry.load([registry_file])
        trivial_file = Path(tmp) / "trivial.cnf"
        trivial_file.write_text(TRIVIAL_CNF)
        trivial_argv = registry.specs[TRIVIAL_PROVER].argv(str(trivial_file))
        serve = ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]
        serve += ["--config", str(racing_config(Path(tmp) / "racing.toml"))]
        with running_server([*serve, "--provers-file", str(registry_file)]) as server:
            minimal = MinimalServer(registry_file)
            try:
                _side_by_side(figures, server, minimal, registry, Path(tmp), trivial_argv)
            finally:
                minimal.close()

        with remote_cluster(str(registry_file)) as dispatcher:
            attempts = max(100, 10 * runs)
            cpu = _run(dispatcher_cpu_per_attempt(dispatcher, attempts))
            figures["dispatcher_cpu_ms"] = cpu
            print("3. Remote workers (dispatcher with no local slots, 2 workers x 4 slots)")
            print(f"{'':4}dispatcher CPU per remote attempt: {cpu:.2f} ms ({attempts} attempts)")
            remote = _run(remote_preemption(dispatcher.address, max(5, runs // 3)))
            figures["remote_cancel"] = remote
            print(f"{'':4}{'':34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
            print(f"{'':4}{'8 remote: cancel -> result':<34} {percentiles(remote)}")
            print()

        print("4. The prover sandbox: spawn to exit, sequential, interleaved")
        print(f"{'':4}{'':34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
        sandbox = sandbox_cost(runs)
        figures["sandbox"] = sandbox
        for command, by_way in sandbox.items():
            for way, values in by_way.items():
                print(f"{'':4}{f'{command}: {way}':<34} {percentiles(values)}")
            extra = statistics.median(by_way["sandboxed"]) - statistics.median(by_way["direct"])
            print(f"{'':4}{command}: sandbox cost at p50 {extra:+.2f} ms")
        print()

    figures["load_after"] = os.getloadavg()
    ratios = summary(figures)
    figures["ratios"] = ratios
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


def _side_by_side(
    figures: dict[str, Any],
    server: RunningServer,
    minimal: MinimalServer,
    registry: Registry,
    workdir: Path,
    trivial_argv: list[str],
) -> None:
    """Parts 1 and 2: proofrace, the bare loop, direct spawns and the minimal pycapnp server."""
    runs = figures["runs"]
    print(f"proofrace core benchmark: {runs} runs per figure, ms unless said")
    print()
    print("1. Eight SAT attempts on pigeonhole-12 stopped; trigger -> all 8 reaped,")
    print("   seen by a watcher process; interleaved run by run")
    print(f"{'':4}{'':34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    stops = _run(preemption_vs_floor(server, minimal, registry, workdir, runs))
    figures["preemption"] = stops
    for key, label in (
        ("cancel", "proofrace: cancel call"),
        ("drop", "proofrace: handle dropped"),
        ("bare", "bare loop: SIGKILL + reap, no RPC"),
        ("minimal_cancel", "minimal pycapnp server: cancel"),
        ("minimal_drop", "minimal pycapnp server: dropped"),
    ):
        print(f"{'':4}{label:<34} {percentiles(stops[key])}")
    print()

    print(f"2. Overhead: {TRIVIAL_PROVER} on a two-clause CNF, interleaved")
    trivial = _run(trivial_vs_direct(server.address, minimal.address, trivial_argv, runs))
    figures["trivial"] = trivial
    print(f"{'':4}{'':34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    print(f"{'':4}{'spawned directly':<34} {percentiles(trivial['direct'])}")
    print(f"{'':4}{'solved through proofrace':<34} {percentiles(trivial['service'])}")
    print(f"{'':4}{'solved through the minimal server':<34} {percentiles(trivial['minimal'])}")
    each = max(2, runs // 5)
    rounds = 3
    rates = _run(throughput_vs_direct(server.address, minimal.address, trivial_argv, rounds, each))
    figures["throughput"] = rates
    print(
        f"{'':4}solves/s at {CLIENTS} at once ({rounds} rounds of {CLIENTS}x{each}): "
        f"direct {statistics.median(rates['direct']):.0f}, "
        f"proofrace {statistics.median(rates['service']):.0f}, "
        f"minimal server {statistics.median(rates['minimal']):.0f}"
    )
    print()


def summary(figures: dict[str, Any]) -> dict[str, float]:
    stops, trivial, rates = figures["preemption"], figures["trivial"], figures["throughput"]
    bare50, bare99 = pick(stops["bare"], 0.5), pick(stops["bare"], 0.99)
    ratios = {
        "cancel_p50_ms": pick(stops["cancel"], 0.5),
        "cancel_p99_ms": pick(stops["cancel"], 0.99),
        "drop_p50_ms": pick(stops["drop"], 0.5),
        "drop_p99_ms": pick(stops["drop"], 0.99),
        "cancel_vs_bare_p50": pick(stops["cancel"], 0.5) / bare50,
        "cancel_vs_bare_p99": pick(stops["cancel"], 0.99) / bare99,
        "drop_vs_bare_p50": pick(stops["drop"], 0.5) / bare50,
        "drop_vs_bare_p99": pick(stops["drop"], 0.99) / bare99,
        "trivial_vs_direct": statistics.median(trivial["service"])
        / statistics.median(trivial["direct"]),
        "throughput_vs_direct": statistics.median(rates["service"])
        / statistics.median(rates["direct"]),
        "dispatcher_cpu_ms": figures["dispatcher_cpu_ms"],
    }
    if "minimal_cancel" in stops:  # runs recorded before the minimal server joined lack it
        ratios |= {
            "cancel_vs_minimal_p50": pick(stops["cancel"], 0.5)
            / pick(stops["minimal_cancel"], 0.5),
            "drop_vs_minimal_p50": pick(stops["drop"], 0.5) / pick(stops["minimal_drop"], 0.5),
            "trivial_vs_minimal": statistics.median(trivial["service"])
            / statistics.median(trivial["minimal"]),
            "throughput_vs_minimal": statistics.median(rates["service"])
            / statistics.median(rates["minimal"]),
        }
    r = ratios
    load = figures["load_before"]
    print(f"Ratios and targets (load average before the run: {load[0]:.2f} {load[1]:.2f})")
    rows = [
        ("cancel -> 8 reaped p50 / p99 (ms)", f"{r['cancel_p50_ms']:.2f} / "
         f"{r['cancel_p99_ms']:.2f}", "<= 3 / 8 (quiet)",
         r["cancel_p50_ms"] <= 3 and r["cancel_p99_ms"] <= 8),
        ("drop -> 8 reaped p50 / p99 (ms)", f"{r['drop_p50_ms']:.2f} / {r['drop_p99_ms']:.2f}",
         "<= 3 / 8 (quiet)", r["drop_p50_ms"] <= 3 and r["drop_p99_ms"] <= 8),
        ("cancel / bare loop, p50 and p99", f"{r['cancel_vs_bare_p50']:.2f}x "
         f"{r['cancel_vs_bare_p99']:.2f}x", "<= 1.3x",
         max(r["cancel_vs_bare_p50"], r["cancel_vs_bare_p99"]) <= 1.3),
        ("drop / bare loop, p50 and p99", f"{r['drop_vs_bare_p50']:.2f}x "
         f"{r['drop_vs_bare_p99']:.2f}x", "<= 1.3x",
         max(r["drop_vs_bare_p50"], r["drop_vs_bare_p99"]) <= 1.3),
        ("trivial solve / direct spawn (median)", f"{r['trivial_vs_direct']:.2f}x", "<= 1.5x",
         r["trivial_vs_direct"] <= 1.5),
        (f"throughput at {CLIENTS} / direct loop", f"{r['throughput_vs_direct']:.2f}x",
         ">= 0.6x", r["throughput_vs_direct"] >= 0.6),
        ("dispatcher CPU per remote attempt", f"{r['dispatcher_cpu_ms']:.2f} ms", "<= 1.3 ms",
         r["dispatcher_cpu_ms"] <= 1.3),
    ]  # fmt: skip
    for label, value, target, ok in rows:
        print(f"{'':4}{label:<40} {value:>16}  target {target:<18} {_verdict(ok)}")
    if "cancel_vs_minimal_p50" in r:
        print("Against the minimal pycapnp server (bench/preemption/minimal.py), no target:")
        for label, value in (
            ("cancel / minimal server, p50", f"{r['cancel_vs_minimal_p50']:.2f}x"),
            ("drop / minimal server, p50", f"{r['drop_vs_minimal_p50']:.2f}x"),
            ("trivial solve / minimal server", f"{r['trivial_vs_minimal']:.2f}x"),
            (f"throughput at {CLIENTS} / minimal server", f"{r['throughput_vs_minimal']:.2f}x"),
        ):
            print(f"{'':4}{label:<40} {value:>16}")
    return ratios


if __name__ == "__main__":
    main()
