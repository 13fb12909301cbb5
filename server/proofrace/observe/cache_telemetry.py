"""The verdict cache's and the shared races' events as metrics and log lines."""

from __future__ import annotations

import structlog

from proofrace.core.model import CacheHit, CancelReason, Grounds, Verdict
from proofrace.observe.metrics import Metrics


class CacheTelemetry:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._log = structlog.get_logger("proofrace")

    def cache_hit(
        self, solve_id: str, goal_id: str, found: CacheHit, verdict: Verdict, grounds: Grounds,
        latency_ns: int,
    ) -> None:  # fmt: skip
        self.metrics.cache_hits.inc()
        self.metrics.cache_hit_latency.observe(latency_ns * 1e-9)
        self._log.info(
            "solve.cached",
            solve_id=solve_id,
            goal_id=goal_id,
            verdict=verdict.value,
            grounds=grounds.value,
            found_by=found.found_by,
            found_in=found.solve_id,
            latency_us=latency_ns // 1000,
        )

    def cache_miss(self, solve_id: str, why: str) -> None:
        self.metrics.cache_misses.inc()
        self._log.debug("cache.miss", solve_id=solve_id, why=why)

    def cache_stored(
        self, solve_id: str, verdict: Verdict, grounds: Grounds, size: int, evicted: int
    ) -> None:
        self.metrics.cache_entries.set(size)
        if evicted:
            self.metrics.cache_evictions.inc(evicted)
        self._log.info(
            "cache.stored",
            solve_id=solve_id,
            verdict=verdict.value,
            grounds=grounds.value,
            entries=size,
            evicted=evicted,
        )

    def cache_error(self, where: str, error: BaseException) -> None:
        self.metrics.cache_errors.labels(where).inc()
        self._log.warning("cache.error", operation=where, error=str(error) or type(error).__name__)

    def race_joined(self, solve_id: str, race_id: str, goal_id: str) -> None:
        self.metrics.race_joins.inc()
        self._log.info("solve.joined", solve_id=solve_id, race=race_id, goal_id=goal_id)

    def race_left(self, solve_id: str, race_id: str, reason: CancelReason) -> None:
        self._log.info(
            "solve.left",
            solve_id=solve_id,
            race=race_id,
            cause=reason.cause.value,
            message=reason.message,
        )
