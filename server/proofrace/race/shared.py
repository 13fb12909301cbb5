"""Identical races shared between callers: one race, many tokens.

A solve whose cache key matches a race already running joins it instead of starting provers.
Each caller holds its own `Caller`, a view of the shared race that speaks the `Solve` protocol
the wire uses, with its own solve id, deadline and cause:
- a caller's cancel, dropped token, lost connection or passed deadline detaches that caller
  only: its outcome says its own cause at once, and the race goes on for the others;
- when the last caller leaves, the race is cancelled with that caller's cause, and that
  caller's outcome is the race's, once every attempt is reaped;
- a race already decided is not cancelled by anyone: every caller gets its verdict.

Deadlines: the race itself runs under the server's maximum; each caller's own deadline is a
timer that detaches it (cause `timeout`), so a joiner with a shorter deadline times out alone
while the race goes on, and a joiner with a longer one keeps it running up to the server's
maximum counted from the race's start, never beyond it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from proofrace.core.model import (
    CancelCause,
    CancelReason,
    ErrorKind,
    SolveError,
    SolveOutcome,
    SolveState,
    SolveStatus,
    Source,
    Verdict,
)
from proofrace.core.once import Once
from proofrace.race.plan import Plan
from proofrace.race.race import Race


class JoinObserver(Protocol):
    def race_joined(self, solve_id: str, race_id: str, goal_id: str) -> None: ...

    def race_left(self, solve_id: str, race_id: str, reason: CancelReason) -> None: ...


class Caller:
    """One caller's view of a shared race."""

    def __init__(
        self, shared: SharedRace, solve_id: str, source: Source, timeout_s: float, goal_id: str
    ) -> None:
        loop = asyncio.get_running_loop()
        self.solve_id = solve_id
        self.source = source
        self.goal_id = goal_id
        self._shared = shared
        self._joined_ns = time.monotonic_ns()
        # A joiner may extend the race only up to the server's maximum from the race's start.
        delay = min(timeout_s, shared.ends_by - time.monotonic())
        self._timeout_s = max(delay, 0.0)
        passed = f"deadline of {round(self._timeout_s, 3):g} s passed"
        self._deadline = loop.call_later(
            self._timeout_s, self.cancel, CancelReason(CancelCause.TIMEOUT, passed)
        )
        self._left: CancelReason | None = None  # detached, with this cause
        self._outcome: Once[SolveOutcome] = Once()

    @property
    def done(self) -> bool:
        return self._outcome.done

    def cancel(self, reason: CancelReason) -> bool:
        return self._shared.leave(self, reason)

    def status(self) -> SolveStatus:
        elapsed = time.monotonic_ns() - self._joined_ns
        if self._left is not None and self._outcome.done:
            return SolveStatus(
                self.solve_id, SolveState.FINISHED, self._left, "", elapsed, (), self.source
            )
        status = self._shared.race.status()
        return replace(status, solve_id=self.solve_id, elapsed_ns=elapsed, source=self.source)

    async def outcome(self) -> SolveOutcome:
        # A caller giving up on result() gives up its own wait, nothing else.
        return await self._outcome.wait()

    # --- driven by the shared race -----------------------------------------------------

    def detach(self, reason: CancelReason) -> None:
        """This caller left while the race goes on for others: its outcome is its own cause."""
        self._left = reason
        verdict = Verdict.TIMEOUT if reason.cause is CancelCause.TIMEOUT else Verdict.CANCELLED
        plan = self._shared.plan
        self._settle(
            SolveOutcome(
                solve_id=self.solve_id,
                goal_id=self.goal_id,
                verdict=verdict,
                strategy=plan.strategy,
                format=plan.problem.format,
                cancel_reason=reason,
            )
        )

    def leaving_last(self) -> None:
        """This caller's cause ends the race; its outcome will be the race's."""
        self._deadline.cancel()

    def settle(self, outcome: SolveOutcome) -> None:
        self._settle(replace(outcome, solve_id=self.solve_id, goal_id=self.goal_id))

    def _settle(self, outcome: SolveOutcome) -> None:
        self._deadline.cancel()
        if not self._outcome.done:
            self._outcome.set(
                replace(
                    outcome,
                    source=self.source,
                    deadline_ms=round(self._timeout_s * 1000),
                    elapsed_ns=time.monotonic_ns() - self._joined_ns,
                )
            )


class SharedRace:
    def __init__(
        self,
        key: str,
        race: Race,
        plan: Plan,
        task: asyncio.Task[object],
        max_timeout_s: float,
        forget: Callable[[SharedRace], None],
        observer: JoinObserver,
    ) -> None:
        self.key = key
        self.race = race
        self.plan = plan
        self.ends_by = time.monotonic() + max_timeout_s
        self.store = False  # some caller wants the verdict cached
        self._attached: list[Caller] = []  # callers still in the race
        self._waiting: list[Caller] = []  # callers whose outcome is the race's
        self._forget = forget  # no one may join it any more
        self._observer = observer
        race.on_settled(self._settled)  # its callers have the outcome as soon as it is known
        task.add_done_callback(self._finished)

    @property
    def callers(self) -> int:
        return len(self._attached)

    def join(self, solve_id: str, timeout_s: float, goal_id: str, *, first: bool) -> Caller:
        source = Source.RACE if first else Source.JOINED
        caller = Caller(self, solve_id, source, timeout_s, goal_id)
        self._attached.append(caller)
        self._waiting.append(caller)
        if not first:
            self._observer.race_joined(solve_id, self.race.solve_id, goal_id)
        return caller

    @property
    def decided(self) -> bool:
        """Decided, cancelled or finished: no caller's leaving changes the outcome any more."""
        return self.race.done or self.race.status().state is not SolveState.RUNNING

    def leave(self, caller: Caller, reason: CancelReason) -> bool:
        if caller not in self._attached or self.decided:
            return False
        self._attached.remove(caller)
        if self._attached:
            self._waiting.remove(caller)
            caller.detach(reason)
            self._observer.race_left(caller.solve_id, self.race.solve_id, reason)
            return True
        # The last caller: the provers stop, with its cause, and it waits for them.
        caller.leaving_last()
        self._forget(self)
        return self.race.cancel(reason)

    def _settled(self, outcome: SolveOutcome) -> None:
        self._forget(self)  # decided
        for caller in self._waiting:
            caller.settle(outcome)
        self._waiting.clear()
        self._attached.clear()

    def _finished(self, task: asyncio.Task[object]) -> None:
        if self.race.done:
            return  # its callers were settled with it
        # The race's task ended without an outcome: never for a sound race; still, no caller
        # may wait forever.
        error = SolveError(ErrorKind.INTERNAL, f"race {self.race.solve_id} failed")
        self._settled(
            SolveOutcome(
                self.race.solve_id,
                "",
                Verdict.ERROR,
                self.plan.strategy,
                self.plan.problem.format,
                error=error,
            )
        )


Launch = Callable[[str, Plan], tuple[Race, "asyncio.Task[object]"]]
Finished = Callable[[SharedRace, SolveOutcome | None], None]  # None: the race failed


class SharedRaces:
    """The races running now, by key; with `share` off, each solve races alone."""

    def __init__(
        self,
        launch: Launch,
        observer: JoinObserver,
        max_timeout_s: float,
        share: bool,
        on_finished: Finished,
    ) -> None:
        self._launch = launch
        self._observer = observer
        self._max_timeout_s = max_timeout_s
        self._share = share
        self._on_finished = on_finished
        self._running: dict[str, SharedRace] = {}

    @property
    def sharing(self) -> bool:
        return self._share

    def find(self, key: str) -> SharedRace | None:
        return self._running.get(key)

    def start(self, solve_id: str, key: str, plan: Plan) -> SharedRace:
        # A race others may join runs under the server's maximum: each caller's own deadline
        # detaches it, so a joiner may keep the race going longer than its first caller.
        timeout_s = self._max_timeout_s if self._share else plan.timeout_s
        race, task = self._launch(solve_id, replace(plan, timeout_s=timeout_s))
        shared = SharedRace(key, race, plan, task, timeout_s, self._forget, self._observer)
        if self._share:
            self._running[key] = shared

        def finished(done: asyncio.Task[object]) -> None:
            self._forget(shared)
            outcome = None if done.cancelled() or done.exception() else done.result()
            self._on_finished(shared, outcome if isinstance(outcome, SolveOutcome) else None)

        task.add_done_callback(finished)
        return shared

    def _forget(self, shared: SharedRace) -> None:
        """No one may join it any more: its last caller left, or it ended."""
        if self._running.get(shared.key) is shared:
            del self._running[shared.key]
