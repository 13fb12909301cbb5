"""The orphan guard: no prover outlives the server, even one killed with SIGKILL.

A small helper process, started with the server, holds the read end of a pipe. The server
writes the process group of every attempt it starts (+pgid) and ends (-pgid). Inside the event
loop these lines are gathered for a short while (`_BATCH_S`) and written together, so a race
of eight costs one write (and one wake-up of the guard), not sixteen, and an attempt that
starts and ends within one batch (a small goal) costs none: its two lines cancel out. A
process started but not yet written down is still found by its environment marker. When the
pipe
reaches end-of-file, the server is gone, however it died: the guard kills every group still
registered, then every process carrying the server's environment marker (this closes the
window between fork and registration), and removes the server's temporary directory.

Run as `python -m proofrace.backends.watchdog MARKER TEMP_ROOT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

MARKER_VARIABLE = "PROOFRACE_OWNER"
# How long lines wait to be written together. A process that starts within it is found by its
# marker should the server die meanwhile.
_BATCH_S = 0.05


class OrphanGuard:
    def __init__(self, process: subprocess.Popen[bytes], marker: str) -> None:
        self._process = process
        self.marker = marker
        self._broken = False
        self._pending: dict[int, str] = {}  # pgid -> "+" or "-", in the order first told
        self._due: asyncio.TimerHandle | None = None

    @classmethod
    def start(cls, temp_root: Path) -> OrphanGuard:
        marker = f"{os.getpid()}-{secrets.token_hex(6)}"
        process = subprocess.Popen(
            [sys.executable, "-m", "proofrace.backends.watchdog", marker, str(temp_root)],
            stdin=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C meant for the server must not reach it
        )
        return cls(process, marker)

    @property
    def environment(self) -> dict[str, str]:
        """Variables every attempt's process carries, so the guard can find it by them."""
        return {MARKER_VARIABLE: self.marker}

    def register(self, pgid: int) -> None:
        self._tell(pgid, "+")

    def unregister(self, pgid: int) -> None:
        if self._pending.get(pgid) == "+":
            del self._pending[pgid]  # started and ended within one batch: nothing to tell
        else:
            self._tell(pgid, "-")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Called after every attempt is reaped: the guard then finds nothing to kill.

        Its exit is awaited on a pidfd, so the event loop runs on meanwhile; a guard that has
        not exited after `timeout_s` is killed."""
        self._write()
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        if not await _exited(self._process.pid, timeout_s):
            self._process.kill()
        self._process.wait()  # it has exited, or been sent SIGKILL: this returns at once

    def _tell(self, pgid: int, sign: str) -> None:
        if self._broken:
            return
        self._pending[pgid] = sign
        if self._due is not None:
            return  # a write is already due
        try:
            self._due = asyncio.get_running_loop().call_later(_BATCH_S, self._write)
        except RuntimeError:
            self._write()  # no loop running: at once

    def _write(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None
        stdin = self._process.stdin
        lines, self._pending = self._pending, {}
        if stdin is None or self._broken or not lines:
            return
        try:
            stdin.write("".join(f"{sign}{pgid}\n" for pgid, sign in lines.items()).encode())
            stdin.flush()
        except OSError:
            # The guard died; attempts still get reaped by the server itself.
            self._broken = True


async def _exited(pid: int, timeout_s: float) -> bool:
    """Whether the child `pid` exits (it is not reaped) within `timeout_s`."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await asyncio.wait_for(exited, timeout_s)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def _marked_processes(marker: str) -> Iterator[int]:
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            yield int(entry.name)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    marker, temp_root = argv
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # only the end of the pipe ends the guard
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
    for pgid in groups:
        _kill_group(pgid)
    for pid in _marked_processes(marker):
        try:
            _kill_group(os.getpgid(pid))
        except ProcessLookupError:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(temp_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
