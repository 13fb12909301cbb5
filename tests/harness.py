"""Test-only pieces beside `proofrace.testing`: where things are, and misbehaving provers."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proofrace.testing import (
    RunningServer,
    marked_processes,
    running_server,
    wait_gone,
)

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
STUBBORN = REPO / "tests" / "provers" / "stubborn.py"

__all__ = [
    "REPO",
    "SAMPLES",
    "RunningServer",
    "marked_processes",
    "running_server",
    "speaking",
    "until",
    "wait_gone",
]


def write_test_registry(path: Path) -> Path:
    """Misbehaving provers for supervision tests, beside the real ones."""
    py, script = sys.executable, str(STUBBORN)
    entries = {
        "think": [],
        "deaf": ["--ignore-term"],
        "forker": ["--fork", "3"],
        "flooder": ["--flood"],
        "liar": ["--answer", "sat"],
    }
    lines = []
    for name, extra in entries.items():
        command = json.dumps([py, script, "{input}", *extra])
        lines += [
            f"[{name}]",
            f"command = {command}",
            'formats = ["smtlib2", "dimacs", "tptp"]',
            "default = false",
            "rules = [['^unsat$', \"proved\"], ['^sat$', \"refuted\"]]",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


async def until(job: Any, predicate: Callable[[Any], bool], timeout: float = 20) -> Any:
    """Ask the job's status() until `predicate(status)` holds, within a deadline. Only status()
    can tell how far a prover has got, so there is no event to wait on instead."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate(status := await job.status()):
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.01)
    return status


def speaking(prover: str) -> Callable[[Any], bool]:
    """A stubborn prover has written output once it has set itself up (handlers, helpers)."""
    return lambda status: any(a.prover == prover and a.output_bytes > 0 for a in status.attempts)
