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
from dataclasses import dataclass
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

    Raises OSError if the process cannot be started.
    """
    loop = asyncio.get_running_loop()
    # Popen returns as soon as the exec succeeded (no waiting); asyncio's own subprocess API
    # would bring its child watcher, and this module waits on a pidfd instead.
    proc = subprocess.Popen(  # noqa: ASYNC220
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    started_ns = time.monotonic_ns()
    pgid = proc.pid
    guard.register(pgid)
    _apply_limits(proc.pid, limits)
    on_spawn(proc.pid)

    assert proc.stdout is not None
    stdout_fd = proc.stdout.fileno()
    os.set_blocking(stdout_fd, False)
    drained: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            data = os.read(stdout_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            output.feed(data)
        else:
            loop.remove_reader(stdout_fd)
            if not drained.done():
                drained.set_result(None)

    loop.add_reader(stdout_fd, on_readable)

    pidfd = os.pidfd_open(proc.pid)
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)

    preempt_reason: CancelReason | None = None
    trigger_ns = 0
    escalated = False
    escalation: asyncio.TimerHandle | None = None

    def signal_group(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)

    def escalate() -> None:
        nonlocal escalated
        if not exited.done():
            escalated = True
            signal_group(signal.SIGKILL)

    def preempt(reason: CancelReason) -> None:
        # Runs inside CancelScope.cancel(): the signal leaves in the trigger's own call stack.
        nonlocal preempt_reason, trigger_ns, escalation
        if exited.done():
            return
        preempt_reason = reason
        trigger_ns = scope.called_ns or time.monotonic_ns()
        signal_group(signal.SIGTERM)
        escalation = loop.call_later(limits.grace_seconds, escalate)
        on_stopping()

    remove_preempt = scope.on_cancel(preempt)
    try:
        try:
            await exited
        except asyncio.CancelledError:
            # The task itself is being torn down (server stopping hard): still reap before leaving.
            signal_group(signal.SIGKILL)
            await outlast(exited)
            raise
        finally:
            remove_preempt()
            if escalation is not None:
                escalation.cancel()
            loop.remove_reader(pidfd)
            signal_group(signal.SIGKILL)  # stragglers; the zombie leader still pins the pgid
            returncode = proc.wait()
            reaped_ns = time.monotonic_ns()
            os.close(pidfd)
            guard.unregister(pgid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(drained), _DRAIN_TIMEOUT_S)
    finally:
        loop.remove_reader(stdout_fd)
        proc.stdout.close()
        output.close()

    exit_status = Exit(signal=-returncode) if returncode < 0 else Exit(code=returncode)
    preemption = (
        Preemption(preempt_reason, trigger_ns, escalated) if preempt_reason is not None else None
    )
    cpu_limited = exit_status.signal == signal.SIGXCPU
    return ProcessReport(exit_status, started_ns, reaped_ns, preemption, cpu_limited)


def _apply_limits(pid: int, limits: Limits) -> None:
    # Set from the parent right after exec rather than in a preexec_fn, which is unsafe in a
    # process with threads; a prover cannot use meaningful CPU or memory in those microseconds.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        resource.prlimit(pid, resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        if limits.memory_bytes > 0:
            resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        if limits.file_bytes > 0:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
