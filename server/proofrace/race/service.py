"""All the races of one server: starting them, tracking them, stopping them all at shutdown."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from proofrace.backends.base import Backend
from proofrace.cache.key import CacheKey, Identity, cache_key
from proofrace.cache.verdicts import VerdictCache
from proofrace.core.model import (
    CachePolicy,
    CancelCause,
    CancelReason,
    ErrorKind,
    ProverInfo,
    SolveError,
    SolveOutcome,
    SolveRequest,
)
from proofrace.race.events import RaceObserver
from proofrace.race.plan import Plan, RaceLimits, plan
from proofrace.race.race import Race, RefusedSolve, Settled, Solve
from proofrace.race.shared import JoinObserver, SharedRace, SharedRaces
from proofrace.race.waiting import WaitingSolve, cancelled_outcome


class RaceService:
    def __init__(
        self,
        backend: Backend,
        observer: RaceObserver,
        limits: RaceLimits,
        *,
        cache: VerdictCache | None = None,
        joins: JoinObserver | None = None,
        entry_digest: Callable[[str], str] = lambda _prover: "",
        share: bool = True,
    ) -> None:
        """`cache`: the verdict cache (None: every solve races); `share`: a solve identical to
        a race already running joins it, observed by `joins`; `entry_digest(prover)` names its
        registry entry, for the cache key."""
        self._backend = backend
        self._observer = observer
        self._limits = limits
        self._running: dict[Race | WaitingSolve, asyncio.Task[object]] = {}
        self._accepting = True
        self._cache = cache
        self._entry_digest = entry_digest
        self._shared = SharedRaces(
            self._launch, joins or _NoJoinObserver(), limits.max_timeout_s, share, self._remember
        )
        self._keys: dict[SharedRace, CacheKey] = {}

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
        refused = RefusedSolve(solve_id or _new_solve_id(), request, error)
        self._observer.solve_refused(refused.solve_id, request.goal_id, refused.result)
        return refused

    def start(self, request: SolveRequest) -> Solve:
        """Validate and start a race of its own in the background; returns at once."""
        solve_id = _new_solve_id()
        planned = self._capacity() or self._plan(request)
        if isinstance(planned, SolveError):
            return self.refuse(request, planned, solve_id)
        race, _task = self._launch(solve_id, planned)
        return race

    async def solve(self, request: SolveRequest, solve_id: str = "") -> Solve:
        """The wire's entry: answer from the verdict cache, else join an identical race
        already running, else start one. Returns once the solve is under way (or answered).
        With no prover available for it yet and `wait_for_capacity_ms` set, it waits for one
        first (in the background: this returns at once)."""
        solve_id = solve_id or _new_solve_id()
        planned = self._plan(request)
        if isinstance(planned, SolveError) and _waits(planned, request):
            self._observer.solve_waiting(
                solve_id, request.goal_id, request.wait_for_capacity_ms, planned.message
            )
            waiting = WaitingSolve(solve_id, request)
            self._track(waiting, self._wait_then_solve(waiting))
            return waiting
        if isinstance(planned, SolveError):
            return self.refuse(request, planned, solve_id)
        # The key is read by the cache and by shared races; with neither, it is not made.
        needs_key = self._cache is not None or self._shared.sharing
        key = await self._key(planned) if needs_key else None
        if self._cache is not None and key is not None:
            hit = await self._cache.lookup(key, request.cache, solve_id, planned)
            if hit is not None:
                return hit
        shared = self._shared.find(key.digest) if key is not None else None
        if shared is None:
            refused = self._capacity()  # again: shutdown may have begun during the lookup
            if refused is not None:
                return self.refuse(request, refused, solve_id)
            shared = self._shared.start(solve_id, key.digest if key else solve_id, planned)
            if key is not None:
                self._keys[shared] = key
        caller = shared.join(solve_id, planned.timeout_s, request.goal_id, first=not shared.callers)
        shared.store |= self._cache is not None and request.cache is not CachePolicy.BYPASS
        return caller

    def _plan(self, request: SolveRequest) -> Plan | SolveError:
        if not self._accepting:
            return SolveError(ErrorKind.SYSTEM_ERROR, "the server is shutting down")
        return plan(request, self._backend.catalog(), self._limits)

    def _capacity(self) -> SolveError | None:
        """Why a new race cannot start now, if it cannot."""
        if not self._accepting:
            return SolveError(ErrorKind.SYSTEM_ERROR, "the server is shutting down")
        if self.in_flight >= self._limits.max_solves:
            return overloaded(f"{self.in_flight} solves in flight, the server's limit")
        return None

    def key(self, planned: Plan) -> CacheKey:
        return cache_key(planned, self._identity())

    async def _key(self, planned: Plan) -> CacheKey:
        identity = self._identity()
        # A large problem's key takes milliseconds: off the event loop.
        if len(planned.problem.content) > _LARGE_BYTES:
            return await asyncio.to_thread(cache_key, planned, identity)
        return cache_key(planned, identity)

    def _identity(self) -> Identity:
        """Each prover's version (as the backends report it now) and registry entry."""
        versions = {info.name: info.version for info in self._backend.catalog()}
        return lambda p: (versions.get(p, ""), self._entry_digest(p))

    def _remember(self, shared: SharedRace, outcome: SolveOutcome | None) -> None:
        key = self._keys.pop(shared, None)
        if key is not None and outcome is not None and shared.store and self._cache is not None:
            self._cache.remember(key, outcome)

    def _launch(self, solve_id: str, planned: Plan) -> tuple[Race, asyncio.Task[object]]:
        race = Race(solve_id, planned, self._backend, self._observer)
        return race, self._track(race, race.run())

    def _track(
        self, solve: Race | WaitingSolve, work: Coroutine[Any, Any, object]
    ) -> asyncio.Task[object]:
        task = asyncio.get_running_loop().create_task(work, name=f"race-{solve.solve_id}")
        self._running[solve] = task
        task.add_done_callback(lambda _task: self._running.pop(solve, None))
        return task

    async def _wait_then_solve(self, waiting: WaitingSolve) -> object:
        request = waiting.request
        # A Pool announces places coming and going; another backend's catalog never changes.
        changed = getattr(self._backend, "changed", None)
        ended = await waiting.wait(lambda: self._plan(request), _needs_capacity, changed)
        if isinstance(ended, CancelReason):
            self._observer.cancel_requested(waiting.solve_id, ended)
            waiting.become(Settled(cancelled_outcome(waiting, ended)))
        elif isinstance(ended, SolveError) and _needs_capacity(ended):
            waited = f"{ended.message} (waited {request.wait_for_capacity_ms} ms)"
            waiting.become(self.refuse(request, SolveError(ended.kind, waited), waiting.solve_id))
        else:
            # Capacity came (or another answer did): the solve goes the usual way, cache and
            # shared races included, under the same id.
            now = replace(request, wait_for_capacity_ms=0)
            inner = await self.solve(now, solve_id=waiting.solve_id)
            waiting.become(inner)
            if waiting.scope.reason is not None:  # cancelled while it was being started
                inner.cancel(waiting.scope.reason)
        return None

    async def shutdown(self) -> None:
        """Refuse new solves, cancel every race, and return once every attempt is reaped."""
        self._accepting = False
        reason = CancelReason(CancelCause.SHUTDOWN, "the server is shutting down")
        for race in list(self._running):
            race.cancel(reason)
        await asyncio.gather(*self._running.values(), return_exceptions=True)


_LARGE_BYTES = 64 * 1024

# A solve id names a solve in answers and logs and grants nothing, so a generator seeded once
# from the system's randomness serves: a getrandom call per solve costs more than the id is worth.
_ids = random.Random()


def _new_solve_id() -> str:
    return f"{_ids.getrandbits(48):012x}"


class _NoJoinObserver:
    def race_joined(self, solve_id: str, race_id: str, goal_id: str) -> None:
        pass

    def race_left(self, solve_id: str, race_id: str, reason: CancelReason) -> None:
        pass


def _waits(error: SolveError, request: SolveRequest) -> bool:
    return _needs_capacity(error) and request.wait_for_capacity_ms > 0


def _needs_capacity(planned: Plan | SolveError) -> bool:
    return isinstance(planned, SolveError) and planned.kind is ErrorKind.PROVER_UNAVAILABLE


def overloaded(message: str) -> SolveError:
    return SolveError(ErrorKind.OVERLOADED, f"{message}; retry later")
