"""Reaping prover processes: a pidfd watch on each, and one short wait for those just killed.

- Each process's pidfd is registered with the event loop, and its readiness callback reaps
  the process (`waitid` on the pidfd) in the loop turn that sees the exit, before any task
  wakes up to account for it.
- A process sent SIGKILL still needs a CPU to die. While eight provers hold both cores, a
  loop woken once per exit, running whatever else is ready in between, takes that CPU from
  the ones still dying: their deaths then spread over about 5 ms, where a bare kill loop
  that sleeps in `waitpid` sees all eight gone in 2. So the processes killed in one loop turn
  (by one cancel, or by several: a worker told to stop four attempts, a client gone with
  many solves) are reaped together in the next, by a single wait on all their
  pidfds, as a bare loop would; an exit costs a `waitid` there, and the reaped ones'
  bookkeeping waits for the last. Reaping each trigger's processes at once instead would kill
  and wait, kill and wait: the deaths would queue up. The wait is bounded by
  `KILLED_WAIT_S`: a process that a SIGKILL does not end at once (stuck in the kernel, in
  uninterruptible sleep) is left to its readiness callback, and the loop is never held
  longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import signal
import time
import weakref

from proofrace.backends.spawn import Child
from proofrace.backends.watchdog import OrphanGuard

# The longest the loop waits for killed processes to die before it serves anything else.
KILLED_WAIT_S = 0.01


class Watch:
    """Waits for one process's exit on a pidfd and reaps it in the readiness callback."""

    def __init__(self, proc: Child, guard: OrphanGuard) -> None:
        self._proc = proc
        self._guard = guard
        self._loop = asyncio.get_running_loop()
        self._reaped = False
        self._waiter: asyncio.Future[None] | None = None
        self.returncode = 0
        self.reaped_ns = 0
        self._killed = False
        self.pidfd = os.pidfd_open(proc.pid)
        self._loop.add_reader(self.pidfd, self.on_exit)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def reaped(self) -> bool:
        return self._reaped

    def wait(self) -> asyncio.Future[None]:
        """A future that is done once the process is reaped, for its supervising task to
        await directly (no shield, so no loop turn in between). Cancelling it cancels only
        that wait: the next call hands out a new one."""
        if self._waiter is None or self._waiter.cancelled():
            self._waiter = self._loop.create_future()
            if self._reaped:
                self._waiter.set_result(None)
        return self._waiter

    def killed(self) -> None:
        """Told once SIGKILL was sent to its group: it is reaped with the others killed in
        the same turn."""
        if not self._killed and not self.reaped and self.pidfd >= 0:
            self._killed = True
            _killed.add(self)

    def on_exit(self) -> None:
        if self.reap():
            self.settle()

    def reap(self) -> bool:
        """Reap the process if it has exited; False if it has not."""
        # Stragglers first: the zombie leader still pins the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        try:
            info = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            info = None  # reaped elsewhere (cannot happen here); report a plain exit
        else:
            if info is None:
                return False  # not exited after all
        self.reaped_ns = time.monotonic_ns()
        if info is not None:
            code = info.si_status
            self.returncode = code if info.si_code == os.CLD_EXITED else -code
        self._proc.reaped(self.returncode)
        return True

    def settle(self) -> None:
        """Once reaped: the descriptor closed, the guard told, the supervising task woken."""
        self.close()
        self._guard.unregister(self._proc.pid)
        self._reaped = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # its output is read by the task, after the reaps

    def close(self) -> None:
        if self.pidfd >= 0:
            self._loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1


class _Killed:
    """The watches of processes killed in this loop turn, per event loop, reaped together in
    the next."""

    def __init__(self) -> None:
        self._batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Watch]] = (
            weakref.WeakKeyDictionary()
        )

    def add(self, watch: Watch) -> None:
        loop = asyncio.get_running_loop()
        batch = self._batches.get(loop)
        if batch is None:
            batch = self._batches[loop] = []
            loop.call_soon(self._reap, loop, batch)
        batch.append(watch)

    def _reap(self, loop: asyncio.AbstractEventLoop, batch: list[Watch]) -> None:
        if self._batches.get(loop) is batch:
            del self._batches[loop]
        reap_within(batch, KILLED_WAIT_S)


_killed = _Killed()


def reap_within(watches: list[Watch], timeout_s: float) -> None:
    """Reap each of `watches` as it exits, waiting up to `timeout_s` in all. Those still
    running then are left to their readiness callbacks. While some are still dying, each
    exit costs a `waitid` and nothing more: the rest of the reaped ones' bookkeeping waits
    until the last is reaped, and the CPU goes to the dying meanwhile."""
    waiting = {w.pidfd: w for w in watches if w.pidfd >= 0 and not w.reaped}
    reaped: list[Watch] = []
    poller = select.poll()
    for fd in waiting:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    try:
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for fd, _events in poller.poll(math.ceil(left * 1000)):
                poller.unregister(fd)
                watch = waiting.pop(fd)
                if watch.reap():
                    reaped.append(watch)
    finally:
        for watch in reaped:
            watch.settle()
