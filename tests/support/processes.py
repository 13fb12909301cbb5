"""Finding processes by the environment marker they carry, and waiting for them to end."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path


def marked_processes(prefix: str) -> list[int]:
    needle = prefix.encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(v.startswith(needle) for v in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """Wait on each pid's pidfd (not a poll loop); returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive
