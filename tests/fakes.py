"""An in-process backend and observer for testing the race layer without processes or sockets.

`FakeBackend` implements the real `Backend` protocol. Each prover follows a script: it
answers when its `release` event is set (at once without one), runs until cancelled when it
has no answer, or raises. A cancel is honoured the way the local backend honours it: the
attempt returns a stop with the scope's reason and the latency from the scope's instant.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from proofrace.backends.base import not_started, stopped_outcome
from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    CancelReason,
    Exit,
    Format,
    Problem,
    ProverInfo,
    SolveOutcome,
    Stop,
    Strategy,
)
from proofrace.core.progress import AttemptProgress

_pids = itertools.count(10_000)


@dataclass
class Script:
    result: AttemptResult | None = None  # None: runs until its scope is cancelled
    release: asyncio.Event | None = None  # answer only once this is set
    error: Exception | None = None  # raised once started
    deaf: bool = False  # ignores a cancel: runs until `release` is set


def proved(prover: str) -> AttemptResult:
    return AttemptResult(prover, AttemptOutcome.PROVED, Answer.PROVED, status="unsat")


def refuted(prover: str) -> AttemptResult:
    return AttemptResult(prover, AttemptOutcome.NO_PROOF_FOUND, Answer.REFUTED, status="sat")


def failed(prover: str, outcome: AttemptOutcome, message: str) -> AttemptResult:
    return AttemptResult(prover, outcome, message=message)


@dataclass
class FakeBackend:
    scripts: dict[str, Script]
    started: list[str] = field(default_factory=list)
    running: set[str] = field(default_factory=set)  # attempts between start and return
    stops: dict[str, CancelReason] = field(default_factory=dict)
    attempt_started: asyncio.Event = field(default_factory=asyncio.Event)
    attempt_returned: asyncio.Event = field(default_factory=asyncio.Event)

    def catalog(self) -> list[ProverInfo]:
        return [
            ProverInfo(name, "1.0", (Format.SMTLIB2, Format.DIMACS), available=True)
            for name in self.scripts
        ]

    async def run(
        self,
        prover: str,
        problem: Problem,
        *,
        timeout_s: float,
        scope: CancelScope,
        progress: AttemptProgress,
    ) -> AttemptResult:
        if scope.reason is not None:
            return not_started(prover, scope)
        script = self.scripts[prover]
        self.started.append(prover)
        self.running.add(prover)
        progress.started(next(_pids))
        self.attempt_started.set()
        try:
            if script.error is not None:
                raise script.error
            return await self._until_answer_or_cancel(prover, script, scope)
        finally:
            self.running.discard(prover)
            self.attempt_returned.set()

    async def _until_answer_or_cancel(
        self, prover: str, script: Script, scope: CancelScope
    ) -> AttemptResult:
        if script.deaf:
            assert script.release is not None
            await script.release.wait()
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(scope.wait())}
        if script.result is not None:
            waits.add(asyncio.ensure_future((script.release or _set()).wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if script.result is not None and (script.release is None or script.release.is_set()):
            return replace(script.result, exit=Exit(code=0))
        assert scope.reason is not None and scope.called_ns is not None
        self.stops[prover] = scope.reason
        stop = Stop(scope.reason, time.monotonic_ns() - scope.called_ns, escalated=False)
        return AttemptResult(prover, stopped_outcome(stop), stop=stop, exit=Exit(signal=15))


async def until(condition: Callable[[], bool], turns: int = 100) -> None:
    """Lets the loop run until `condition` holds, failing if it never does. In-process code only
    advances when the loop turns, so a turn is the event awaited here, not a span of time."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"still false after {turns} loop turns")


T = TypeVar("T")


class Noted(list[T]):
    """A list whose growth can be awaited: what a callback reports, as it comes."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def append(self, item: T) -> None:
        super().append(item)
        self._changed.set()

    async def reaching(self, count: int = 1) -> None:
        while len(self) < count:
            self._changed.clear()
            await self._changed.wait()


def _set() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


class RecordingObserver:
    """A RaceObserver that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.finished: list[SolveOutcome] = []
        self.errors: list[BaseException] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def solve_started(
        self, solve_id: str, goal_id: str, strategy: Strategy, provers: tuple[str, ...]
    ) -> None:
        self.events.append(("solve_started", provers))

    def solve_refused(self, solve_id: str, goal_id: str, outcome: SolveOutcome) -> None:
        self.events.append(("solve_refused", outcome))

    def attempt_started(self, solve_id: str, attempt: str, prover: str, pid: int) -> None:
        self.events.append(("attempt_started", prover))

    def cancel_requested(self, solve_id: str, reason: CancelReason) -> None:
        self.events.append(("cancel_requested", reason))

    def winner(self, solve_id: str, result: AttemptResult, elapsed_ns: int) -> None:
        self.events.append(("winner", result.prover))

    def attempt_finished(self, solve_id: str, attempt: str, result: AttemptResult) -> None:
        self.events.append(("attempt_finished", result))

    def solve_finished(self, outcome: SolveOutcome, stop_latency_ns: int | None) -> None:
        self.events.append(("solve_finished", stop_latency_ns))
        self.finished.append(outcome)

    def internal_error(self, solve_id: str, where: str, error: BaseException) -> None:
        self.events.append(("internal_error", where))
        self.errors.append(error)
