"""The supervision steps on a real process, in process: whichever step fails after the spawn,
the process is still reaped and the orphan guard told so; and the guard closes without
blocking the event loop."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from proofrace.backends import process, reap
from proofrace.backends.process import Limits, supervise
from proofrace.backends.verdicts import OutputScanner
from proofrace.backends.watchdog import OrphanGuard
from proofrace.core.cancel import CancelScope
from proofrace.core.model import CancelCause, CancelReason

from fakes import Noted

LIMITS = Limits(cpu_seconds=30, memory_bytes=0, file_bytes=0, grace_seconds=0.2)


class Guard:
    """Records what an OrphanGuard would be told; `on_unregister` runs as each end is told."""

    def __init__(self, on_unregister: Callable[[], None] = lambda: None) -> None:
        self.registered: list[int] = []
        self.unregistered: list[int] = []
        self._on_unregister = on_unregister

    def register(self, pgid: int) -> None:
        self.registered.append(pgid)

    def unregister(self, pgid: int) -> None:
        self.unregistered.append(pgid)
        self._on_unregister()


Pids = Noted[int]  # the pids spawned, as they come


def gone(pid: int) -> bool:
    """Reaped: not even a zombie is left."""
    return not os.path.exists(f"/proc/{pid}")


async def start(
    tmp_path: Path,
    scope: CancelScope,
    guard: Guard,
    pids: Pids,
    argv: list[str],
    limits: Limits = LIMITS,
) -> process.ProcessReport:
    return await supervise(
        argv,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        limits=limits,
        scope=scope,
        output=OutputScanner([], 1024),
        guard=guard,  # type: ignore[arg-type]
        on_spawn=pids.append,
        on_stopping=lambda: None,
    )


async def test_a_process_is_preempted_and_reaped(tmp_path: Path) -> None:
    guard, pids, scope = Guard(), Pids(), CancelScope()
    running = asyncio.ensure_future(start(tmp_path, scope, guard, pids, ["sleep", "30"]))
    await pids.reaching()
    scope.cancel(CancelReason(CancelCause.CLIENT, "stop"))
    report = await running
    assert report.preemption is not None and report.preemption.reason.cause is CancelCause.CLIENT
    assert report.exit.signal == signal.SIGKILL and gone(pids[0])
    assert report.preemption.escalated is False
    assert guard.registered == guard.unregistered == pids


async def test_a_prover_that_asks_for_sigterm_gets_it(tmp_path: Path) -> None:
    guard, pids, scope = Guard(), Pids(), CancelScope()
    gentle = replace(LIMITS, stop_signal=signal.SIGTERM)
    running = asyncio.ensure_future(start(tmp_path, scope, guard, pids, ["sleep", "30"], gentle))
    await pids.reaching()
    scope.cancel(CancelReason(CancelCause.CLIENT, "stop"))
    report = await running
    assert report.exit.signal == signal.SIGTERM and gone(pids[0])
    assert report.preemption is not None and report.preemption.escalated is False


class Sleepers:
    """Four `sleep 30` processes supervised under one scope. `seen` holds what the first
    supervising task to go on after its reap found: which of the four were reaped; `told`,
    the same as the guard was told of each end."""

    def __init__(self, tmp_path: Path) -> None:
        self.scope, self.pids = CancelScope(), [Pids() for _ in range(4)]
        self.guard = Guard(on_unregister=lambda: self.told.append(self.gone()))
        self.seen: list[list[bool]] = []
        self.told: list[list[bool]] = []
        self._tmp_path = tmp_path
        self.running: list[asyncio.Future[process.ProcessReport]] = []

    async def start(self) -> None:
        sleepers = self

        class Output(OutputScanner):
            def close(self) -> None:  # the supervising task's first step after the reap
                sleepers.seen.append(sleepers.gone())
                super().close()

        self.running = [
            asyncio.ensure_future(
                supervise(
                    ["sleep", "30"],
                    cwd=self._tmp_path,
                    env={"PATH": os.environ["PATH"]},
                    limits=LIMITS,
                    scope=self.scope.child(),
                    output=Output([], 1024),
                    guard=self.guard,  # type: ignore[arg-type]
                    on_spawn=p.append,
                    on_stopping=lambda: None,
                )
            )
            for p in self.pids
        ]
        for p in self.pids:
            await p.reaching()

    def gone(self) -> list[bool]:
        return [gone(p[0]) for p in self.pids]

    async def reports(self) -> list[process.ProcessReport]:
        return await asyncio.gather(*self.running)


async def test_every_exit_seen_in_one_loop_turn_is_reaped_before_any_task_goes_on(
    tmp_path: Path,
) -> None:
    # Four processes are killed and the loop is held until all four have exited, so it sees
    # the four exits in one turn. Whichever supervising task then goes on first must find all
    # four already reaped: each readiness callback reaps, the tasks only account afterwards.
    sleepers = Sleepers(tmp_path)
    await sleepers.start()
    fds = [os.pidfd_open(p[0]) for p in sleepers.pids]
    sleepers.scope.cancel(CancelReason(CancelCause.CLIENT, "stop"))  # SIGKILL leaves here
    waiting = set(fds)
    while waiting:  # the loop is held on purpose until every process has exited
        waiting -= set(select.select(list(waiting), [], [])[0])
    for fd in fds:
        os.close(fd)
    reports = await sleepers.reports()
    assert sleepers.seen[0] == [True] * 4
    assert all(r.exit.signal == signal.SIGKILL for r in reports)


async def test_the_processes_killed_in_one_turn_are_all_reaped_in_one_wait_in_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing holds the loop here: the reap itself waits for all four deaths, so whichever
    # supervising task goes on first finds all four reaped (the bound is raised so that a
    # loaded machine cannot outlast it).
    monkeypatch.setattr(reap, "KILLED_WAIT_S", 30.0)
    sleepers = Sleepers(tmp_path)
    await sleepers.start()
    sleepers.scope.cancel(CancelReason(CancelCause.CLIENT, "stop"))
    assert not any(sleepers.gone())  # killed, not yet reaped
    reports = await sleepers.reports()
    assert sleepers.seen[0] == [True] * 4
    # While some were still dying, an exit cost a reap and nothing more: the bookkeeping
    # (the guard told, among it) came once the last was reaped.
    assert sleepers.told[0] == [True] * 4
    assert all(r.exit.signal == signal.SIGKILL for r in reports)
    assert sorted(sleepers.guard.unregistered) == sorted(p[0] for p in sleepers.pids)


async def test_when_pidfd_open_fails_the_process_is_still_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(pid: int) -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(process.os, "pidfd_open", refuse)
    guard, pids = Guard(), Pids()
    with pytest.raises(OSError, match="Too many open files"):
        await start(tmp_path, CancelScope(), guard, pids, ["sleep", "30"])
    assert gone(pids[0])
    assert guard.registered == guard.unregistered == pids


async def test_when_the_spawn_hook_fails_the_process_is_still_reaped(tmp_path: Path) -> None:
    guard, pids = Guard(), Pids()

    def on_spawn(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("observer bug")

    with pytest.raises(RuntimeError):
        await supervise(
            ["sleep", "30"],
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"]},
            limits=LIMITS,
            scope=CancelScope(),
            output=OutputScanner([], 1024),
            guard=guard,  # type: ignore[arg-type]
            on_spawn=on_spawn,
            on_stopping=lambda: None,
        )
    assert gone(pids[0])
    assert guard.registered == guard.unregistered == pids


async def test_a_supervising_task_torn_down_still_reaps(tmp_path: Path) -> None:
    guard, pids = Guard(), Pids()
    running = asyncio.ensure_future(start(tmp_path, CancelScope(), guard, pids, ["sleep", "30"]))
    await pids.reaching()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert gone(pids[0])
    assert guard.registered == guard.unregistered == pids


async def test_closing_the_guard_does_not_block_the_event_loop(tmp_path: Path) -> None:
    # A guard that does not exit at the end of its pipe (it never reads it): closing it waits
    # on its exit without blocking, then kills it.
    stuck = subprocess.Popen(["sleep", "30"], stdin=subprocess.PIPE)
    guard = OrphanGuard(stuck, marker="test")
    ticked = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_soon(ticked.set)
    await guard.close(timeout_s=0.01)
    assert ticked.is_set()  # the loop ran while the guard was being closed
    assert stuck.returncode == -signal.SIGKILL


async def test_the_guard_is_told_in_batches_and_never_of_an_attempt_that_came_and_went() -> None:
    # `cat` stands in for the guard and shows what it was told.
    echo = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert echo.stdout is not None
    guard = OrphanGuard(echo, marker="test")
    guard.register(101)
    guard.register(102)
    guard.unregister(101)  # within the same batch: the guard never hears of 101
    told = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_reader(echo.stdout, lambda: told.done() or told.set_result(0))
    await told  # the batch was written when its time came, with no flush asked for
    asyncio.get_running_loop().remove_reader(echo.stdout)
    assert os.read(echo.stdout.fileno(), 4096) == b"+102\n"
    guard.unregister(102)  # told before: its end is told too
    await guard.close()
    assert echo.stdout.read() == b"-102\n"
