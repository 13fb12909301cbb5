"""The verdict cache in front of the races: look a goal up, answer a hit at once, remember
decisive outcomes. A store that fails or is slow costs a miss, never a solve: the error is
logged and counted, and the race runs."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from proofrace.cache.entry import Entry, entry_for
from proofrace.cache.key import CacheKey, PlanLike
from proofrace.cache.store import StoreError, VerdictStore
from proofrace.core.model import (
    CacheHit,
    CachePolicy,
    Grounds,
    SolveOutcome,
    SolveState,
    SolveStatus,
    Source,
    Verdict,
)

# Beyond this, a lookup counts as a miss: a slow store must not hold a solve up.
LOOKUP_TIMEOUT_S = 1.0


class CacheObserver(Protocol):
    """Metrics and logs implement this (`observe/cache_telemetry.py`)."""

    def cache_hit(
        self, solve_id: str, goal_id: str, found: CacheHit, verdict: Verdict, grounds: Grounds,
        latency_ns: int,
    ) -> None: ...  # fmt: skip

    def cache_miss(self, solve_id: str, why: str) -> None: ...

    def cache_stored(
        self, solve_id: str, verdict: Verdict, grounds: Grounds, size: int, evicted: int
    ) -> None: ...

    def cache_error(self, where: str, error: BaseException) -> None: ...


class VerdictCache:
    def __init__(self, store: VerdictStore, observer: CacheObserver) -> None:
        self.store = store
        self._observer = observer
        self._writes: set[asyncio.Task[None]] = set()

    async def lookup(
        self, key: CacheKey, policy: CachePolicy, solve_id: str, plan: PlanLike
    ) -> CachedSolve | None:
        """A finished solve answering from the cache, or None: race it."""
        if policy not in (CachePolicy.USE, CachePolicy.CERTIFIED_ONLY):
            return None
        if not self.store.may_hold(key.digest):
            self._observer.cache_miss(solve_id, "absent")
            return None
        started = time.monotonic_ns()
        try:
            entry = await asyncio.wait_for(self.store.get(key.digest), LOOKUP_TIMEOUT_S)
        except (StoreError, TimeoutError) as error:
            self._observer.cache_error("lookup", error)
            self._observer.cache_miss(solve_id, "store unavailable")
            return None
        if entry is None:
            self._observer.cache_miss(solve_id, "absent")
            return None
        if policy is CachePolicy.CERTIFIED_ONLY and not entry.certified:
            self._observer.cache_miss(solve_id, f"only {entry.grounds.value}")
            return None
        latency = time.monotonic_ns() - started
        solved = CachedSolve(solve_id, plan, entry, latency)
        assert solved.result.cached is not None
        self._observer.cache_hit(
            solve_id, plan.problem.goal_id, solved.result.cached, entry.verdict, entry.grounds,
            latency,
        )  # fmt: skip
        return solved

    def remember(self, key: CacheKey, outcome: SolveOutcome) -> None:
        """Store a race's outcome if it is a verdict; in the background."""
        entry = entry_for(key, outcome)
        if entry is None:
            return
        task = asyncio.get_running_loop().create_task(self._put(entry))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, entry: Entry) -> None:
        try:
            stored = await self.store.put(entry)
        except StoreError as error:
            self._observer.cache_error("store", error)
            return
        self._observer.cache_stored(
            entry.solve_id, entry.verdict, entry.grounds, stored.size, stored.evicted
        )

    async def flush(self) -> None:
        """Wait for the writes under way."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def close(self) -> None:
        """Finish the writes under way, then close the store."""
        await self.flush()
        await self.store.close()


class CachedSolve:
    """A solve the cache answered: finished from the start."""

    def __init__(self, solve_id: str, plan: PlanLike, entry: Entry, latency_ns: int) -> None:
        self.solve_id = solve_id
        self.result = SolveOutcome(
            solve_id=solve_id,
            goal_id=plan.problem.goal_id,
            verdict=entry.verdict,
            strategy=plan.strategy,
            format=plan.problem.format,
            winner=entry.winner,
            elapsed_ns=latency_ns,
            deadline_ms=round(plan.timeout_s * 1000),
            grounds=entry.grounds,
            source=Source.CACHE,
            cached=CacheHit(entry.found_us, entry.winner, entry.solve_id),
        )

    @property
    def done(self) -> bool:
        return True

    def cancel(self, reason: object) -> bool:
        return False

    def status(self) -> SolveStatus:
        return SolveStatus(
            self.solve_id,
            SolveState.FINISHED,
            None,
            self.result.winner,
            self.result.elapsed_ns,
            (),
            Source.CACHE,
        )

    async def outcome(self) -> SolveOutcome:
        return self.result
