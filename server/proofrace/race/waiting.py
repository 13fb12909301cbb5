"""A solve that waits for capacity: with no prover available yet for it (a dispatcher whose
workers are still starting), it waits up to the bound its caller chose, then races like any
other solve, or gives the error it would have had at once, or ends cancelled if cancelled
meanwhile. Until the race starts it has no attempts to show."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    CancelReason,
    SolveError,
    SolveOutcome,
    SolveRequest,
    SolveState,
    SolveStatus,
    Verdict,
)
from proofrace.race.plan import Plan
from proofrace.race.race import Solve


class WaitingSolve:
    def __init__(self, solve_id: str, request: SolveRequest) -> None:
        self.solve_id = solve_id
        self.request = request
        self.scope = CancelScope()
        self._created_ns = time.monotonic_ns()
        self._inner: Solve | None = None
        self._ready: asyncio.Future[Solve] = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        return self._inner.done if self._inner is not None else False

    def cancel(self, reason: CancelReason) -> bool:
        if self._inner is not None:
            return self._inner.cancel(reason)
        return self.scope.cancel(reason)

    def status(self) -> SolveStatus:
        if self._inner is not None:
            return self._inner.status()
        state = SolveState.CANCELLING if self.scope.cancel_called else SolveState.RUNNING
        elapsed = time.monotonic_ns() - self._created_ns
        return SolveStatus(self.solve_id, state, self.scope.reason, "", elapsed, ())

    async def outcome(self) -> SolveOutcome:
        inner = await asyncio.shield(self._ready)
        return await inner.outcome()

    def become(self, inner: Solve) -> None:
        """From now on this solve is `inner` (a race, or a settled answer)."""
        self._inner = inner
        self._ready.set_result(inner)

    async def wait(
        self,
        replan: Callable[[], Plan | SolveError],
        still_waiting: Callable[[Plan | SolveError], bool],
        changed: Callable[[], Awaitable[None]] | None,
    ) -> Plan | SolveError | CancelReason:
        """Until `replan` gives something other than a wait, the bound passes, or a cancel."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request.wait_for_capacity_ms / 1000
        planned = replan()
        cancelled = asyncio.ensure_future(self.scope.wait())
        try:
            while still_waiting(planned) and changed is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                change = asyncio.ensure_future(changed())
                try:
                    await asyncio.wait(
                        {change, cancelled}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    change.cancel()
                if self.scope.reason is not None:
                    return self.scope.reason
                planned = replan()
        finally:
            cancelled.cancel()
        return self.scope.reason or planned


def cancelled_outcome(waiting: WaitingSolve, reason: CancelReason) -> SolveOutcome:
    request = waiting.request
    return SolveOutcome(
        solve_id=waiting.solve_id,
        goal_id=request.goal_id,
        verdict=Verdict.TIMEOUT if reason.cause.value == "timeout" else Verdict.CANCELLED,
        strategy=request.strategy,
        format=request.format,
        cancel_reason=reason,
        elapsed_ns=time.monotonic_ns() - waiting._created_ns,
    )
