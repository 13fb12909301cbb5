"""Running a prover binary directly, as the echidna host does today: one subprocess with a
timeout. The command line and the verdict rules are the service's own registry entries, so a
direct run and a run through the service differ only in how they are driven."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from proofrace.backends.registry import ProverSpec, Registry
from proofrace.backends.verdicts import Finding, OutputScanner

_DECISIVE = {Finding.PROVED: "proved", Finding.REFUTED: "refuted"}


@dataclass(frozen=True)
class Run:
    prover: str
    answer: str  # proved | refuted | unknown | timeout | error
    seconds: float

    @property
    def decisive(self) -> bool:
        return self.answer in ("proved", "refuted")


def registry() -> Registry:
    return Registry.load()


def run(spec: ProverSpec, problem: Path, timeout: float) -> Run:
    """One attempt in its own session and scratch directory (a prover may write a model or a
    proof file there); on timeout the whole process group is killed."""
    with tempfile.TemporaryDirectory(prefix="proofrace-direct-") as scratch:
        start = time.perf_counter()
        process = subprocess.Popen(
            spec.argv(str(problem.resolve())),
            cwd=scratch,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return Run(spec.name, "timeout", time.perf_counter() - start)
        seconds = time.perf_counter() - start
    return Run(spec.name, classify(spec, output), seconds)


def classify(spec: ProverSpec, output: bytes) -> str:
    scanner = OutputScanner(spec.rules, tail_bytes=0)
    scanner.feed(output)
    scanner.close()
    if scanner.error is not None:
        return "error"
    if scanner.answer is None:
        return "unknown"
    return _DECISIVE.get(scanner.answer.finding, "unknown")


def sequential(
    specs: list[ProverSpec], problem: Path, timeout: float
) -> tuple[float, str, list[Run]]:
    """The host's way today: one prover after another, in a fixed order, each with `timeout`,
    until one is decisive. Returns the total time, the answer and every run made."""
    runs = []
    start = time.perf_counter()
    for spec in specs:
        runs.append(run(spec, problem, timeout))
        if runs[-1].decisive:
            break
    return time.perf_counter() - start, runs[-1].answer, runs
