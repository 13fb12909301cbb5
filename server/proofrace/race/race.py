"""One race: attempts under a cancel scope, a judge, and an outcome that waits for every reap.

Two scopes, so the outcome can tell them apart:
- `scope` ends the race from outside (cancel call, token dropped, disconnect, deadline,
  shutdown); its reason is the solve's cancel reason.
- `_attempts` is its child, also cancelled when the race is decided ("preempted by z3"); every
  attempt runs under a child of it.
Nothing outlives the race: `run` returns only once every attempt's process is reaped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from proofrace.backends.base import Backend
from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    AttemptOutcome,
    AttemptResult,
    AttemptState,
    CancelCause,
    CancelReason,
    SolveError,
    SolveOutcome,
    SolveRequest,
    SolveState,
    SolveStatus,
    Verdict,
)
from proofrace.core.once import Once
from proofrace.core.progress import AttemptProgress
from proofrace.race.events import RaceObserver
from proofrace.race.plan import Plan
from proofrace.race.strategy import Judge

# How often one attempt may start over on another place when the one running it drains.
_MAX_MOVES = 3


class Solve(Protocol):
    """What the wire layer holds for each solve, running or refused."""

    solve_id: str

    @property
    def done(self) -> bool: ...

    def cancel(self, reason: CancelReason) -> bool: ...

    def status(self) -> SolveStatus: ...

    async def outcome(self) -> SolveOutcome: ...


class Race:
    def __init__(self, solve_id: str, plan: Plan, backend: Backend, observer: RaceObserver) -> None:
        self.solve_id = solve_id
        self._plan = plan
        self._backend = backend
        self._observer = observer
        self.scope = CancelScope()
        self._attempts = self.scope.child()
        self._judge = Judge(plan.strategy, plan.quorum, confirm=plan.confirm, engines=plan.engines)
        self._progress = {
            prover: AttemptProgress(
                prover, self._attempt_id(i), on_started=self._started_hook(i, prover)
            )
            for i, prover in enumerate(plan.provers)
        }
        self._results: dict[str, AttemptResult] = {}
        self._created_ns = time.monotonic_ns()
        self._end_triggered_ns: int | None = None
        self._decided_ns = 0  # created to decided
        self._outcome: Once[SolveOutcome] = Once()

    # --- what callers see --------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._outcome.done

    def cancel(self, reason: CancelReason) -> bool:
        """End the race early. No effect once it is decided or every attempt has ended."""
        if self._outcome.done or self._judge.winner is not None:
            return False
        if all(p.state is AttemptState.FINISHED for p in self._progress.values()):
            return False
        if not self.scope.cancel(reason):
            return False
        self._end_triggered_ns = self.scope.called_ns
        self._observer.cancel_requested(self.solve_id, reason)
        return True

    def status(self) -> SolveStatus:
        if self._outcome.done:
            state = SolveState.FINISHED
        elif self._attempts.cancel_called:
            state = SolveState.CANCELLING
        else:
            state = SolveState.RUNNING
        winner = self._judge.winner
        return SolveStatus(
            solve_id=self.solve_id,
            state=state,
            cancel_reason=self.scope.reason,
            winner=winner.prover if winner else "",
            elapsed_ns=time.monotonic_ns() - self._created_ns,
            attempts=tuple(p.snapshot() for p in self._progress.values()),
        )

    async def outcome(self) -> SolveOutcome:
        # A caller giving up on result() gives up its own wait, not the race.
        return await self._outcome.wait()

    def on_settled(self, callback: Callable[[SolveOutcome], None]) -> None:
        """`callback(outcome)` as soon as the outcome is known, in the stack that settles it."""
        self._outcome.on_set(callback)

    # --- running -----------------------------------------------------------------------

    async def run(self) -> SolveOutcome:
        plan = self._plan
        self._observer.solve_started(
            self.solve_id, plan.problem.goal_id, plan.strategy, plan.provers
        )
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(
            plan.timeout_s,
            self.cancel,
            CancelReason(CancelCause.TIMEOUT, f"deadline of {plan.timeout_s:g} s passed"),
        )
        try:
            async with asyncio.TaskGroup() as attempts:
                for index, prover in enumerate(plan.provers):
                    attempts.create_task(self._attempt(index, prover))
        finally:
            deadline.cancel()
            if not self._outcome.done:
                self._settle()
        return self._outcome.result()

    async def _attempt(self, index: int, prover: str) -> None:
        progress = self._progress[prover]
        for moves in range(_MAX_MOVES + 1):
            result = await self._run_once(prover, progress)
            if not self._withdrawn(result) or moves == _MAX_MOVES:
                break
            # Its place shut down under it (a worker draining), not the race: it starts over
            # on another place, or waits for one to come (the backend queues it). The run that
            # ended is reported as what it was.
            self._observer.attempt_finished(self.solve_id, self._attempt_id(index), result)
        progress.finished(result.outcome)
        self._results[prover] = result
        self._observer.attempt_finished(self.solve_id, self._attempt_id(index), result)
        if self._judge.record(result):
            now = time.monotonic_ns()
            self._end_triggered_ns = self._end_triggered_ns or now
            self._decided_ns = now - self._created_ns
            self._attempts.cancel(
                CancelReason(CancelCause.PREEMPTED, f"preempted by {result.prover}"), at_ns=now
            )
        if len(self._results) == len(self._progress) and not self._outcome.done:
            # The last attempt has ended: the outcome is known here, two loop turns before
            # the task group's exit would tell run().
            self._settle()

    async def _run_once(self, prover: str, progress: AttemptProgress) -> AttemptResult:
        try:
            return await self._backend.run(
                prover,
                self._plan.problem,
                timeout_s=self._plan.timeout_s,
                scope=self._attempts.child(),
                progress=progress,
            )
        except Exception as error:  # a bug must not take the other attempts down with it
            self._observer.internal_error(self.solve_id, f"attempt {prover}", error)
            return AttemptResult(
                prover,
                AttemptOutcome.SYSTEM_ERROR,
                message=f"internal error; the server log has it under solve {self.solve_id}",
            )

    def _withdrawn(self, result: AttemptResult) -> bool:
        """Stopped because the place running it shut down, while the race itself goes on."""
        return (
            result.stop is not None
            and result.stop.reason.cause is CancelCause.SHUTDOWN
            and not self._attempts.cancel_called
        )

    def _settle(self) -> None:
        now = time.monotonic_ns()
        self._judge.prefer_earliest(
            {
                prover: progress.started_ns + result.elapsed_ns
                for prover, result in self._results.items()
                if (progress := self._progress[prover]).started_ns is not None
            }
        )
        winner = self._judge.winner
        if winner is not None:
            # Reported once the winner is final, so the log and wins_total name the same one.
            self._observer.winner(self.solve_id, winner, self._decided_ns)
        decision = self._judge.decide(self.scope.reason)
        attempts = tuple(
            self._results.get(p)
            or AttemptResult(p, AttemptOutcome.SYSTEM_ERROR, message="the attempt did not finish")
            for p in self._plan.provers
        )
        outcome = SolveOutcome(
            solve_id=self.solve_id,
            goal_id=self._plan.problem.goal_id,
            verdict=decision.verdict,
            strategy=self._plan.strategy,
            format=self._plan.problem.format,
            attempts=attempts,
            winner=decision.winner,
            cancel_reason=decision.cancel_reason,
            error=decision.error,
            disagreement=self._judge.disagreement,
            elapsed_ns=now - self._created_ns,
            deadline_ms=round(self._plan.timeout_s * 1000),
            grounds=decision.grounds,
            conflict=decision.conflict,
        )
        stopped = any(a.stop is not None for a in attempts)
        stop_latency = now - self._end_triggered_ns if stopped and self._end_triggered_ns else None
        self._outcome.set(outcome)
        self._observer.solve_finished(outcome, stop_latency)

    def _attempt_id(self, index: int) -> str:
        return f"{self.solve_id}.{index}"

    def _started_hook(self, index: int, prover: str) -> _StartedHook:
        return _StartedHook(self._observer, self.solve_id, self._attempt_id(index), prover)


class _StartedHook:
    def __init__(self, observer: RaceObserver, solve_id: str, attempt: str, prover: str) -> None:
        self._args = (solve_id, attempt, prover)
        self._observer = observer

    def __call__(self, pid: int) -> None:
        self._observer.attempt_started(*self._args, pid)


class Settled:
    """A solve that ended before any race: its outcome is known from the start."""

    def __init__(self, outcome: SolveOutcome) -> None:
        self.solve_id = outcome.solve_id
        self.result = outcome

    @property
    def done(self) -> bool:
        return True

    def cancel(self, reason: CancelReason) -> bool:
        return False

    def status(self) -> SolveStatus:
        return SolveStatus(self.solve_id, SolveState.FINISHED, self.result.cancel_reason, "", 0, ())

    async def outcome(self) -> SolveOutcome:
        return self.result


class RefusedSolve(Settled):
    """A request that failed validation: finished from the start, with an error verdict."""

    def __init__(self, solve_id: str, request: SolveRequest, error: SolveError) -> None:
        super().__init__(
            SolveOutcome(
                solve_id=solve_id,
                goal_id=request.goal_id,
                verdict=Verdict.ERROR,
                strategy=request.strategy,
                format=request.format,
                error=error,
            )
        )
