"""A private redis-server for tests: on a Unix socket in a temporary directory, no persistence."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
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
    ready = threading.Event()
    seen: list[str] = []

    def read_log() -> None:
        # Read to the end, so a full pipe never blocks it; say when it accepts connections.
        assert process.stdout is not None
        for raw in process.stdout:
            seen.append(raw.decode(errors="replace"))
            if "ready to accept connections" in seen[-1].lower():
                ready.set()
        ready.set()  # it exited: nothing more will come

    threading.Thread(target=read_log, daemon=True).start()
    if not ready.wait(30) or process.poll() is not None:
        process.kill()
        process.wait()
        raise AssertionError(f"redis-server did not start: {''.join(seen[-5:])}")
    try:
        yield f"unix://{socket}"
    finally:
        process.terminate()
        process.wait(timeout=10)
