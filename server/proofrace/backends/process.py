"""Running one prover process under supervision: start, watch, preempt, reap.

- Each attempt is the leader of its own session and process group; stopping it signals the
  whole group (a prover's helpers die with it), SIGTERM first, SIGKILL after a grace period.
- Exit is awaited on a pidfd registered with the event loop: no polling, no watcher threads.
- When the leader has exited but is not yet reaped, its zombie still holds the group id, so
  one more SIGKILL to the group clears any stragglers without risk of hitting a reused pid.
- The process counts as stopped only once it is reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from proofrace.backends.verdicts import OutputScanner
from proofrace.backends.watchdog import OrphanGuard
from proofrace.core.cancel import CancelScope, outlast
from proofrace.core.model import CancelReason, Exit

_READ_CHUNK = 64 * 1024
# After the group is dead its pipe closes at once; this only bounds a process that escaped
# the group (a new session of its own) while holding the pipe.
_DRAIN_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int  # RLIMIT_CPU soft limit; the hard limit is one second more
    memory_bytes: int  # RLIMIT_AS; 0 for no limit
    file_bytes: int  # RLIMIT_FSIZE: the largest file it may write; 0 for no limit
    grace_seconds: float  # SIGTERM to SIGKILL


@dataclass(frozen=True)
class Preemption:
    reason: CancelReason
    trigger_ns: int
    escalated: bool


@dataclass(frozen=True)
class ProcessReport:
    exit: Exit
    started_ns: int
    reaped_ns: int
    preemption: Preemption | None  # set when the scope was cancelled while it ran
    cpu_limited: bool


async def supervise(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    limits: Limits,
    scope: CancelScope,
    output: OutputScanner,
    guard: OrphanGuard,
    on_spawn: Callable[[int], None],
    on_stopping: Callable[[], None],
) -> ProcessReport:
    """Run `argv` until it exits or `scope` is cancelled; return once it is reaped.

    The steps: spawn, pump its output, preempt (SIGTERM, then SIGKILL after the grace period)
    if the scope is cancelled, reap. Whatever fails after the spawn, the process is reaped
    before the error goes on. Raises OSError if the process cannot be started.
    """
    proc = spawn(argv, cwd=cwd, env=env, limits=limits)
    started_ns = time.monotonic_ns()
    guard.register(proc.pid)
    pump: _Pump | None = None
    try:
        on_spawn(proc.pid)
        pump = _Pump(proc, output)
        preemption = await _until_exit(proc, scope, limits.grace_seconds, on_stopping)
    except BaseException:
        _reap(proc, guard)
        if pump is not None:
            pump.close()
        else:
            _close_output(proc, output)
        raise
    returncode, reaped_ns = _reap(proc, guard)
    await pump.finish()

    exit_status = Exit(signal=-returncode) if returncode < 0 else Exit(code=returncode)
    cpu_limited = exit_status.signal == signal.SIGXCPU
    return ProcessReport(exit_status, started_ns, reaped_ns, preemption, cpu_limited)


def spawn(
    argv: list[str], *, cwd: Path, env: dict[str, str], limits: Limits
) -> subprocess.Popen[bytes]:
    """Start `argv` as the leader of a new session and process group, its output (stdout and
    stderr together) on a pipe, with its resource limits applied. Raises OSError."""
    # Popen returns as soon as the exec succeeded (no waiting); asyncio's own subprocess API
    # would bring its child watcher, and this module waits on a pidfd instead.
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    try:
        _apply_limits(proc.pid, limits)
    except BaseException:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        raise
    return proc


class _Pump:
    """Feeds the process's output to the scanner as it becomes readable, until end-of-file."""

    def __init__(self, proc: subprocess.Popen[bytes], output: OutputScanner) -> None:
        assert proc.stdout is not None
        self._proc = proc
        self._output = output
        self._fd = proc.stdout.fileno()
        self._loop = asyncio.get_running_loop()
        self._drained: asyncio.Future[None] = self._loop.create_future()
        os.set_blocking(self._fd, False)
        self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._output.feed(data)
        else:
            self._loop.remove_reader(self._fd)
            if not self._drained.done():
                self._drained.set_result(None)

    async def finish(self) -> None:
        """Once the process is reaped: read what is left, then close the pipe and scanner."""
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drained), _DRAIN_TIMEOUT_S)
        finally:
            self.close()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        _close_output(self._proc, self._output)


def _close_output(proc: subprocess.Popen[bytes], output: OutputScanner) -> None:
    if proc.stdout is not None:
        proc.stdout.close()
    output.close()


class _Stopper:
    """Preemption and escalation of one process group: SIGTERM when the scope is cancelled,
    SIGKILL if it has not exited after the grace period."""

    def __init__(
        self,
        pgid: int,
        scope: CancelScope,
        grace_seconds: float,
        exited: asyncio.Future[None],
        on_stopping: Callable[[], None],
    ) -> None:
        self._pgid = pgid
        self._scope = scope
        self._grace_seconds = grace_seconds
        self._exited = exited
        self._on_stopping = on_stopping
        self._escalation: asyncio.TimerHandle | None = None
        self.preemption: Preemption | None = None
        self._escalated = False

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, signum)

    def preempt(self, reason: CancelReason) -> None:
        # Runs inside CancelScope.cancel(): the signal leaves in the trigger's own call stack.
        if self._exited.done():
            return
        trigger_ns = self._scope.called_ns or time.monotonic_ns()
        self.preemption = Preemption(reason, trigger_ns, escalated=False)
        self.signal(signal.SIGTERM)
        self._escalation = asyncio.get_running_loop().call_later(
            self._grace_seconds, self._escalate
        )
        self._on_stopping()

    def _escalate(self) -> None:
        if not self._exited.done() and self.preemption is not None:
            self.preemption = replace(self.preemption, escalated=True)
            self.signal(signal.SIGKILL)

    def disarm(self) -> None:
        if self._escalation is not None:
            self._escalation.cancel()


async def _until_exit(
    proc: subprocess.Popen[bytes],
    scope: CancelScope,
    grace_seconds: float,
    on_stopping: Callable[[], None],
) -> Preemption | None:
    """Wait for the process to exit (not yet reaped), preempting it if `scope` is cancelled.
    Returns the preemption, if there was one."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(proc.pid)
    try:
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        stopper = _Stopper(proc.pid, scope, grace_seconds, exited, on_stopping)
        remove_preempt = scope.on_cancel(stopper.preempt)
        try:
            await exited
        except asyncio.CancelledError:
            # The task itself is being torn down (server stopping hard): still wait for the
            # exit, so the reap that follows does not block.
            stopper.signal(signal.SIGKILL)
            await outlast(exited)
            raise
        finally:
            remove_preempt()
            stopper.disarm()
            loop.remove_reader(pidfd)
        return stopper.preemption
    finally:
        os.close(pidfd)


def _reap(proc: subprocess.Popen[bytes], guard: OrphanGuard) -> tuple[int, int]:
    """Kill whatever is left of the group and reap the leader: its return code and the instant.

    After a normal exit this returns at once; when an earlier step failed it kills the process
    first, so the wait is short either way."""
    # Stragglers: the zombie leader still pins the group id, so this cannot hit a reused pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    returncode = proc.wait()
    reaped_ns = time.monotonic_ns()
    guard.unregister(proc.pid)
    return returncode, reaped_ns


def _apply_limits(pid: int, limits: Limits) -> None:
    # Set from the parent right after exec rather than in a preexec_fn, which is unsafe in a
    # process with threads; a prover cannot use meaningful CPU or memory in those microseconds.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        resource.prlimit(pid, resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        if limits.memory_bytes > 0:
            resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        if limits.file_bytes > 0:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
