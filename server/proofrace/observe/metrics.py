"""Prometheus metrics, on a registry of their own (one per server)."""

from __future__ import annotations

import contextlib
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info


class Slots(Protocol):
    """What the slot gauges read, at each scrape (a Pool)."""

    @property
    def slots(self) -> int: ...

    @property
    def slots_busy(self) -> int: ...

    waiting: int


# 100 µs to 10 s: preempting a prover costs from a fraction of a millisecond (minisat) to
# several (eprover); a stuck one is bounded by the SIGKILL grace period.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.info = Info("proofrace", "Build information", registry=r)
        self.preemption_latency = Histogram(
            "proofrace_preemption_latency_seconds",
            "Trigger (cancel called, winner found, deadline) to the attempt's process reaped",
            ["reason", "prover"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stop_latency = Histogram(
            "proofrace_solve_stop_latency_seconds",
            "Trigger to the last stopped attempt of a solve reaped",
            ["reason"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.solves = Counter(
            "proofrace_solves", "Solves finished", ["strategy", "verdict"], registry=r
        )
        self.cancellations = Counter(
            "proofrace_solve_cancellations",
            "Solves ended early from outside, by cause",
            ["cause"],
            registry=r,
        )
        self.attempts = Counter(
            "proofrace_attempts", "Attempts finished", ["prover", "outcome"], registry=r
        )
        self.wins = Counter(
            "proofrace_wins", "Races decided by this prover", ["prover"], registry=r
        )
        self.solves_in_flight = Gauge(
            "proofrace_solves_in_flight", "Solves not yet finished", registry=r
        )
        self.attempts_in_flight = Gauge(
            "proofrace_attempts_in_flight", "Prover processes running", registry=r
        )
        self.solve_duration = Histogram(
            "proofrace_solve_duration_seconds",
            "Solve accepted to every attempt reaped",
            ["strategy"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.disagreements = Counter(
            "proofrace_disagreements",
            "Solves in which decisive answers contradicted each other",
            registry=r,
        )
        self.wrong_answers = Counter(
            "proofrace_wrong_answers",
            "Answers whose certificate (model or proof) was checked and failed, per prover",
            ["prover"],
            registry=r,
        )
        self.connections = Gauge("proofrace_connections", "Open client connections", registry=r)
        self.workers = Gauge("proofrace_workers", "Remote workers registered", registry=r)
        self.internal_errors = Counter(
            "proofrace_internal_errors", "Unexpected errors, logged with a traceback", registry=r
        )
        self.accept_failures = Counter(
            "proofrace_accept_failures",
            "Connections that could not be accepted (each logged with a traceback)",
            registry=r,
        )
        self.undelivered_events = Counter(
            "proofrace_worker_undelivered_events",
            "Attempt events a worker could not deliver to its dispatcher (each logged)",
            ["event"],
            registry=r,
        )
        # The verdict cache, and races shared between callers.
        self.cache_hits = Counter(
            "proofrace_cache_hits", "Solves answered by the cache", registry=r
        )
        self.cache_misses = Counter(
            "proofrace_cache_misses", "Cache lookups that found no usable verdict", registry=r
        )
        self.cache_entries = Gauge(
            "proofrace_cache_entries",
            "Verdicts in the cache, as of this server's last write",
            registry=r,
        )
        self.cache_evictions = Counter(
            "proofrace_cache_evictions", "Verdicts evicted by this server's writes", registry=r
        )
        self.cache_errors = Counter(
            "proofrace_cache_errors",
            "Cache operations that failed (counted as misses)",
            ["operation"],
            registry=r,
        )
        self.cache_hit_latency = Histogram(
            "proofrace_cache_hit_latency_seconds",
            "Lookup time of a cache hit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.race_joins = Counter(
            "proofrace_race_joins",
            "Solves that joined an identical race already running",
            registry=r,
        )
        # Remote workers by name, on the dispatcher: 1 while registered, 0 once lost (a worker
        # that drained on purpose leaves no series behind), and how each one left.
        self.worker_connected = Gauge(
            "proofrace_worker_connected",
            "1 while the named worker is registered; 0 after it was lost without a drain",
            ["worker"],
            registry=r,
        )
        self.worker_departures = Counter(
            "proofrace_worker_departures",
            "Workers that left, by name and how: drained (on purpose) or lost",
            ["worker", "how"],
            registry=r,
        )
        # Capacity, for autoscaling: slots offered, slots in use, attempts queued for one.
        self.slots = Gauge("proofrace_slots", "Attempt slots offered (with a limit)", registry=r)
        self.slots_busy = Gauge("proofrace_slots_busy", "Attempt slots in use", registry=r)
        self.attempts_waiting = Gauge(
            "proofrace_attempts_waiting", "Attempts waiting for a free slot", registry=r
        )

    def worker_changed(self, name: str, change: str) -> None:
        """A worker registered, drained or was lost (WorkerDirectory's `on_change`)."""
        if change == "registered":
            self.worker_connected.labels(name).set(1)
            return
        self.worker_departures.labels(name, change).inc()
        if change == "lost":
            self.worker_connected.labels(name).set(0)
        else:
            with contextlib.suppress(KeyError):  # never registered under this name
                self.worker_connected.remove(name)

    def watch_slots(self, pool: Slots) -> None:
        """Read the slot gauges from `pool` at each scrape."""
        self.slots.set_function(lambda: pool.slots)
        self.slots_busy.set_function(lambda: pool.slots_busy)
        self.attempts_waiting.set_function(lambda: pool.waiting)
