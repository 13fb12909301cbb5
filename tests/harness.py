"""Test-only pieces beside `tests.support`: where things are, and misbehaving provers."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.processes import marked_processes, wait_gone
from tests.support.server import RunningServer, running_server

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
STUBBORN = REPO / "tests" / "provers" / "stubborn.py"
# The named pipes stubborn provers announce readiness on, one per registry entry.
READY = Path(tempfile.mkdtemp(prefix="proofrace-ready-"))
atexit.register(shutil.rmtree, READY, True)
FLOOD_BEFORE_READY = 64 * 1024 * 1024

__all__ = [
    "REPO",
    "SAMPLES",
    "RunningServer",
    "marked_processes",
    "readiness",
    "running_server",
    "wait_gone",
]


def write_test_registry(path: Path) -> Path:
    """Misbehaving provers for supervision tests, beside the real ones."""
    # The base interpreter, not a virtualenv's: the sandbox lets a prover read its own
    # installation, and the stub needs nothing from the venv.
    py, script = os.path.realpath(sys.executable), str(STUBBORN)
    entries = {
        "think": [],
        "deaf": ["--ignore-term"],
        "forker": ["--fork", "3"],
        "flooder": ["--flood", "--flood-before-ready", str(FLOOD_BEFORE_READY)],
        "liar": ["--answer", "sat"],
        "attacker": ["--attack"],
    }
    lines = []
    for name, extra in entries.items():
        fifo = READY / f"{name}.ready"
        if not fifo.exists():
            os.mkfifo(fifo)
        command = json.dumps([py, script, "{input}", "--ready", str(fifo), *extra])
        lines += [
            f"[{name}]",
            f"command = {command}",
            'formats = ["smtlib2", "dimacs", "tptp"]',
            "default = false",
            "rules = [['^unsat$', \"proved\"], ['^sat$', \"refuted\"]]",
            # These two stand for provers that need SIGTERM (and a grace period) to stop.
            *(['stop = "term"'] if name in ("think", "deaf") else []),
            "",
        ]
    path.write_text("\n".join(lines))
    return path


@contextlib.contextmanager
def readiness(prover: str, timeout: float = 20) -> Iterator[Callable[[], None]]:
    """`with readiness("deaf") as ready: ...start a solve...; ready()` returns once that
    stubborn prover has set itself up (handlers installed, helpers forked, flood under way):
    it announces so on a named pipe, which is read here with a deadline."""
    fd = os.open(READY / f"{prover}.ready", os.O_RDONLY | os.O_NONBLOCK)

    def ready() -> None:
        readable, _, _ = select.select([fd], [], [], timeout)
        assert readable and os.read(fd, 64), f"{prover} never said it was ready"

    try:
        yield ready
    finally:
        os.close(fd)
