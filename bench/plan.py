"""How big a run is: the full benchmark, or the smoke-sized one that CI runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    timeout_s: float = 10.0  # per prover, per instance (the race gets the same)
    attempts: tuple[int, ...] = (1, 4, 8)  # attempts to stop, for the preemption latency
    latency_runs: int = 30  # races per mechanism and attempt count: cancel, drop
    first_success_runs: int = 20  # the same for first success, whose races take seconds
    trivial_runs: int = 30  # trivial solves, through the service and direct
    clients: tuple[int, ...] = (1, 8, 32)  # concurrent clients for the solve rate
    rate_seconds: float = 4.0  # per concurrency level
    idle_connections: int = 200
    inflight_solves: int = 64
    smt_problem: str = "genhard/pigeonhole-8.smt2"  # first success: z3 wins, cvc5 loses


FULL = Plan()
SMOKE = Plan(
    timeout_s=5.0,
    attempts=(1, 2),
    latency_runs=2,
    first_success_runs=2,
    trivial_runs=3,
    clients=(1, 2),
    rate_seconds=0.5,
    idle_connections=5,
    inflight_solves=3,
    smt_problem="genhard/pigeonhole-4.smt2",
)
