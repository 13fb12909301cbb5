"""A private redis-server for tests: on a Unix socket in a temporary directory, no persistence."""

from __future__ import annotations

import contextlib
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """Yields the server's URL once it says it accepts connections."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: scripts/setup.sh installs it"
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(directory), "--loglevel", "notice"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while not any("ready to accept connections" in line.lower() for line in seen[-1:]):
        readable, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        line = process.stdout.readline().decode(errors="replace") if readable else ""
        if not line:
            process.kill()
            raise AssertionError(f"redis-server did not start: {''.join(seen[-5:])}")
        seen.append(line)
    # Keep reading its log, so a full pipe never blocks it.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    try:
        yield f"unix://{socket}"
    finally:
        process.terminate()
        process.wait(timeout=10)
