"""All the races of one server: starting them, tracking them, stopping them all at shutdown."""

from __future__ import annotations

import asyncio
import secrets

from proofrace.backends.base import Backend
from proofrace.core.model import (
    CancelCause,
    CancelReason,
    ErrorKind,
    ProverInfo,
    SolveError,
    SolveRequest,
)
from proofrace.race.events import RaceObserver
from proofrace.race.plan import RaceLimits, plan
from proofrace.race.race import Race, RefusedSolve, Solve


class RaceService:
    def __init__(self, backend: Backend, observer: RaceObserver, limits: RaceLimits) -> None:
        self._backend = backend
        self._observer = observer
        self._limits = limits
        self._running: dict[Race, asyncio.Task[object]] = {}
        self._accepting = True

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def catalog(self) -> list[ProverInfo]:
        return self._backend.catalog()

    def refuse(self, request: SolveRequest, error: SolveError, solve_id: str = "") -> Solve:
        """A solve refused before it reached a race (by the wire's own checks, say)."""
        refused = RefusedSolve(solve_id or secrets.token_hex(6), request, error)
        self._observer.solve_refused(refused.solve_id, request.goal_id, refused.result)
        return refused

    def start(self, request: SolveRequest) -> Solve:
        """Validate and start a race in the background; returns at once."""
        solve_id = secrets.token_hex(6)
        planned = (
            SolveError(ErrorKind.SYSTEM_ERROR, "the server is shutting down")
            if not self._accepting
            else overloaded(f"{self.in_flight} solves in flight, the server's limit")
            if self.in_flight >= self._limits.max_solves
            else plan(request, self._backend.catalog(), self._limits)
        )
        if isinstance(planned, SolveError):
            return self.refuse(request, planned, solve_id)
        race = Race(solve_id, planned, self._backend, self._observer)
        task = asyncio.get_running_loop().create_task(race.run(), name=f"race-{solve_id}")
        self._running[race] = task
        task.add_done_callback(lambda _task: self._running.pop(race, None))
        return race

    async def shutdown(self) -> None:
        """Refuse new solves, cancel every race, and return once every attempt is reaped."""
        self._accepting = False
        reason = CancelReason(CancelCause.SHUTDOWN, "the server is shutting down")
        for race in list(self._running):
            race.cancel(reason)
        await asyncio.gather(*self._running.values(), return_exceptions=True)


def overloaded(message: str) -> SolveError:
    return SolveError(ErrorKind.OVERLOADED, f"{message}; retry later")
