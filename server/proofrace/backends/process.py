"""Running one prover process under supervision: start, watch, preempt, reap.

- Each attempt is the leader of its own session and process group; stopping it signals the
  whole group (a prover's helpers die with it). SIGKILL by default: it brings a prover down
  as fast as any signal and needs no second step. A prover that must clean up asks for
  SIGTERM in its registry entry, and gets SIGKILL after its grace period if still running.
- Exit is awaited on a pidfd registered with the event loop: no polling, no watcher threads.
- Reap at once (`reap.py`): the pidfd's readiness callback reaps the process in the
  event-loop turn that sees the exit, and the processes killed in one turn are reaped
  together in the next, by one short wait on their pidfds. Reports, logs and metrics come
  after, so eight losers are all reaped before the first line is written.
- Before the reap, the zombie leader still holds the group id, so one more SIGKILL to the
  group clears any stragglers without risk of hitting a reused pid.
- The spawn (`spawn.py`) is a vfork and exec, of a launcher that sets the limits in the child
  when one is put in front of `argv`. While other processes are supervised, it runs on a
  small thread pool, with whatever file work the caller needs before it: the event loop does
  not wait for an exec or a disk, and goes on reaping and serving meanwhile. Alone, it runs
  in the loop: a thread hop would only add latency.
- The process counts as stopped only once it is reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from proofrace.backends.reap import Watch
from proofrace.backends.spawn import Child, spawn
from proofrace.backends.spawn import Limits as Limits
from proofrace.backends.verdicts import OutputScanner
from proofrace.backends.watchdog import OrphanGuard
from proofrace.core.cancel import CancelScope, outlast
from proofrace.core.model import CancelReason, Exit

T = TypeVar("T")
_READ_CHUNK = 64 * 1024
# After the group is dead its pipe closes at once; this only bounds a process that escaped
# the group (a new session of its own) while holding the pipe.
_DRAIN_TIMEOUT_S = 1.0

# Spawns and scratch-file work, off the event loop. A few threads: each mostly waits in the
# kernel (vfork until the exec, or the file system), with the interpreter lock released.
_OFF_LOOP = ThreadPoolExecutor(max_workers=4, thread_name_prefix="proofrace-spawn")


class _Live:
    """How many processes this module supervises right now."""

    count = 0


_live = _Live()


async def off_loop(work: Callable[[], T]) -> T:
    """Run blocking file or process work on the spawn threads while any process is being
    supervised (the loop must stay free to reap it); in the loop itself otherwise."""
    if _live.count == 0:
        return work()
    return await asyncio.get_running_loop().run_in_executor(_OFF_LOOP, work)


# (argv, attempt directory, limits) -> the command line that runs argv confined and limited,
# in the attempt directory (the launcher enters it: see spawn.CWD_OPTION).
Launch = Callable[[list[str], Path, Limits], list[str]]


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
    prepare: Callable[[], None] = lambda: None,
    launch: Launch | None = None,
) -> ProcessReport:
    """Run `argv` until it exits or `scope` is cancelled; return once it is reaped.

    The steps: spawn, pump its output, preempt (the stop signal, then SIGKILL after the grace
    period if that was not SIGKILL already) if the scope is cancelled, reap. Whatever fails
    after the spawn, the process is reaped before the error goes on. `prepare` runs just
    before the spawn, where the spawn runs (writing the input file, say). `launch` wraps
    `argv` in a launcher that applies `limits` (and any confinement) in the child before the
    prover's first instruction; without it the parent sets the limits. Raises OSError if
    the process cannot be started.
    """
    command = launch(argv, cwd, limits) if launch is not None else argv
    proc = await _spawn_off_loop(
        command, cwd=cwd, env=env, limits=limits, prepare=prepare, launched=launch is not None
    )
    _live.count += 1
    try:
        return await _supervise(proc, scope, limits, output, guard, on_spawn, on_stopping)
    finally:
        _live.count -= 1


async def _supervise(
    proc: Child,
    scope: CancelScope,
    limits: Limits,
    output: OutputScanner,
    guard: OrphanGuard,
    on_spawn: Callable[[int], None],
    on_stopping: Callable[[], None],
) -> ProcessReport:
    started_ns = time.monotonic_ns()
    guard.register(proc.pid)
    pump: _Pump | None = None
    watch: Watch | None = None
    try:
        on_spawn(proc.pid)
        pump = _Pump(proc, output)
        watch = Watch(proc, guard)
        preemption = await _until_reaped(watch, scope, limits, on_stopping)
    except BaseException:
        if watch is None or not watch.reaped:
            _reap_now(proc, guard)
        if pump is not None:
            pump.close()
        else:
            _close_output(proc, output)
        raise
    await pump.finish()
    returncode, reaped_ns = watch.returncode, watch.reaped_ns
    exit_status = Exit(signal=-returncode) if returncode < 0 else Exit(code=returncode)
    cpu_limited = exit_status.signal == signal.SIGXCPU
    return ProcessReport(exit_status, started_ns, reaped_ns, preemption, cpu_limited)


async def _spawn_off_loop(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    limits: Limits,
    prepare: Callable[[], None],
    launched: bool = False,
) -> Child:
    def work() -> Child:
        prepare()
        return spawn(argv, cwd=cwd, env=env, limits=limits, launched=launched)

    if _live.count == 0:
        # Nothing else to serve or reap: a thread hop would only add two wake-ups.
        return work()
    started = asyncio.get_running_loop().run_in_executor(_OFF_LOOP, work)
    try:
        return await asyncio.shield(started)
    except asyncio.CancelledError:
        # Torn down while the spawn ran: a process that did start must not be left behind.
        try:
            proc = await outlast(started)
        except Exception:
            raise asyncio.CancelledError from None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.close_output()
        raise


class _Pump:
    """Feeds the process's output to the scanner as it becomes readable, until end-of-file."""

    def __init__(self, proc: Child, output: OutputScanner) -> None:
        self._proc = proc
        self._output = output
        self._fd = proc.output
        self._loop = asyncio.get_running_loop()
        self._drained: asyncio.Future[None] | None = None
        self._eof = False
        os.set_blocking(self._fd, False)
        self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        self.read_available()
        if self._eof:
            self._loop.remove_reader(self._fd)
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    def read_available(self) -> None:
        """Read what the pipe holds now, without waiting; notes end-of-file."""
        while not self._eof:
            try:
                data = os.read(self._fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._eof = True
                return
            self._output.feed(data)
            if len(data) < _READ_CHUNK:
                return  # likely empty now; the next readiness says if not

    async def finish(self) -> None:
        """Once the process is reaped: read what is left, then close the pipe and scanner.
        The group is dead by then, so end-of-file is nearly always already there."""
        try:
            self.read_available()
            if not self._eof:
                self.read_available()
            if not self._eof:
                self._drained = self._loop.create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._drained), _DRAIN_TIMEOUT_S)
        finally:
            self.close()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        _close_output(self._proc, self._output)


def _close_output(proc: Child, output: OutputScanner) -> None:
    proc.close_output()
    output.close()


class _Stopper:
    """Preemption and escalation of one process group: the stop signal when the scope is
    cancelled, and SIGKILL after the grace period if that was a gentler one."""

    def __init__(
        self,
        pgid: int,
        scope: CancelScope,
        limits: Limits,
        watch: Watch,
        on_stopping: Callable[[], None],
    ) -> None:
        self._pgid = pgid
        self._scope = scope
        self._limits = limits
        self._watch = watch
        self._on_stopping = on_stopping
        self._escalation: asyncio.TimerHandle | None = None
        self.preemption: Preemption | None = None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, signum)
        if signum == signal.SIGKILL:
            self._watch.killed()

    def preempt(self, reason: CancelReason) -> None:
        # Runs inside CancelScope.cancel(): the signal leaves in the trigger's own call stack.
        if self._watch.reaped:
            return
        trigger_ns = self._scope.called_ns or time.monotonic_ns()
        self.preemption = Preemption(reason, trigger_ns, escalated=False)
        self.signal(self._limits.stop_signal)
        if self._limits.stop_signal != signal.SIGKILL:
            self._escalation = asyncio.get_running_loop().call_later(
                self._limits.grace_seconds, self._escalate
            )
        self._on_stopping()

    def _escalate(self) -> None:
        if not self._watch.reaped and self.preemption is not None:
            self.preemption = replace(self.preemption, escalated=True)
            self.signal(signal.SIGKILL)

    def disarm(self) -> None:
        if self._escalation is not None:
            self._escalation.cancel()


async def _until_reaped(
    watch: Watch, scope: CancelScope, limits: Limits, on_stopping: Callable[[], None]
) -> Preemption | None:
    """Wait until the process has exited and been reaped, preempting it if `scope` is
    cancelled. Returns the preemption, if there was one."""
    stopper = _Stopper(watch.pid, scope, limits, watch, on_stopping)
    remove_preempt = scope.on_cancel(stopper.preempt)
    try:
        await watch.wait()
    except asyncio.CancelledError:
        # The task itself is being torn down (server stopping hard): still wait for the
        # reap, so nothing is left behind.
        stopper.signal(signal.SIGKILL)
        await outlast(watch.wait())
        raise
    finally:
        remove_preempt()
        stopper.disarm()
        watch.close()
    return stopper.preemption


def _reap_now(proc: Child, guard: OrphanGuard) -> None:
    """When a step failed: kill whatever is left of the group and reap the leader, blocking
    (it was just sent SIGKILL, so the wait is short)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    guard.unregister(proc.pid)
