"""All preemption measurements, mechanism beside mechanism, one attempt count at a time.

Three triggers, each with k attempts to stop (k = 1, 4, 8 by default):
- cancel: a race of k real SAT solvers (cadical and minisat, seeded) on a hard pigeonhole
  problem (`hard`, which no attempt finishes in the meantime) is cancelled from outside;
- drop: the same race, ended by dropping the handle (proofrace only: neither the polling
  flag nor pySMT has a handle whose loss stops anything);
- first success: z3 wins on an SMT instance of the corpus while k seeded cvc5 copies are
  still searching (pySMT: the same solvers through their Python bindings).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import direct
from bench.core import PORTFOLIO
from bench.preemption import polling, service
from bench.progress import Progress
from bench.registry import seeded
from proofrace.backends.registry import ProverSpec, Registry
from tests.support.server import RunningServer

MECHANISMS = ("proofrace", "polling", "pysmt")
TRIGGERS = ("cancel", "drop", "first_success")
WINNER, LOSER = "z3", "cvc5"


@dataclass
class Latencies:
    """trigger -> mechanism -> k -> milliseconds; `spoiled` counts first-success races that
    were not won by the winner with every loser still running (left out of the figures)."""

    samples: dict[str, dict[str, dict[int, list[float]]]] = field(
        default_factory=lambda: {t: {} for t in TRIGGERS}
    )
    spoiled: dict[str, dict[int, int]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # mechanism -> why

    def add(self, trigger: str, mechanism: str, k: int, values: list[float]) -> None:
        self.samples[trigger].setdefault(mechanism, {})[k] = values

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "spoiled": self.spoiled,
            "unavailable": self.unavailable,
        }


def _command(spec: ProverSpec, problem: Path) -> polling.Command:
    return spec.argv(str(problem)), lambda out: direct.classify(spec, out) in ("proved", "refuted")


def steps(attempts: tuple[int, ...], runs: int, first_success_runs: int) -> int:
    """Races in a `measure` run, for the progress bar."""
    return len(attempts) * (3 * runs + 3 * first_success_runs)


async def measure(
    server: RunningServer,
    registry_file: Path,
    hard: Path,
    smt_problem: Path,
    attempts: tuple[int, ...],
    runs: int,
    first_success_runs: int,
    progress: Progress,
) -> Latencies:
    found = Latencies()
    registry = Registry.load([registry_file])
    smt_text = await asyncio.to_thread(smt_problem.read_text)
    hard_text = await asyncio.to_thread(hard.read_text)
    for k in attempts:
        sat = PORTFOLIO[:k]
        progress.section(f"cancel, {k} attempts")
        cancelled = await service.cancel(server.address, hard_text, sat, runs, progress.step)
        found.add("cancel", "proofrace", k, cancelled)
        commands = [_command(registry.specs[p], hard) for p in sat]
        found.add("cancel", "polling", k, [])
        for _ in range(runs):
            # The flag goes up at a random moment, so the workers' polling phases are spread.
            delay = random.uniform(0.1, 0.1 + polling.POLL_S)
            trial = await asyncio.to_thread(polling.cancel_trial, commands, delay)
            found.samples["cancel"]["polling"][k].append(trial)
            progress.step()

        progress.section(f"drop, {k} attempts")
        dropped = await service.drop(server, hard_text, sat, runs, progress.step)
        found.add("drop", "proofrace", k, dropped)

        progress.section(f"first success, {k} losers")
        losers = seeded(LOSER, k)
        values, spoiled = await service.first_success(
            server.address, smt_text, WINNER, losers, first_success_runs, progress.step
        )
        found.add("first_success", "proofrace", k, values)
        found.spoiled.setdefault("proofrace", {})[k] = spoiled
        winner = _command(registry.specs[WINNER], smt_problem)
        loser_commands = [_command(registry.specs[p], smt_problem) for p in losers]
        trials = []
        for _ in range(first_success_runs):
            trials.append(
                await asyncio.to_thread(polling.first_success_trial, winner, loser_commands)
            )
            progress.step()
        found.add("first_success", "polling", k, [t for t in trials if t is not None])
        found.spoiled.setdefault("polling", {})[k] = sum(t is None for t in trials)
        await asyncio.to_thread(_pysmt, found, smt_problem, k, first_success_runs)
        progress.step(first_success_runs)
    return found


def _pysmt(found: Latencies, problem: Path, k: int, runs: int) -> None:
    if "pysmt" in found.unavailable:
        return
    argv = [
        sys.executable, "-m", "bench.preemption.pysmt_side", str(problem),
        "--winner", WINNER, "--loser", LOSER, "--losers", str(k), "--runs", str(runs),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60 + 30 * runs, check=True
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as failure:
        stderr = failure.stderr if isinstance(failure.stderr, str) else ""
        found.unavailable["pysmt"] = f"{type(failure).__name__}: {stderr.strip()[-500:]}"
        return
    trials = json.loads(done.stdout)[str(k)]
    kept = [
        t["latency_ms"]
        for t in trials
        if t["winner"].endswith(f"({WINNER})") and t["losers_finished"] == 0
    ]
    found.add("first_success", "pysmt", k, kept)
    found.spoiled.setdefault("pysmt", {})[k] = len(trials) - len(kept)
