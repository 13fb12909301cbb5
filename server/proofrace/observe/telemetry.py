"""Turns race events into metrics and structured log lines. Every line carries the solve id,
and attempt lines carry the attempt id and the prover."""

from __future__ import annotations

import structlog

from proofrace.core.model import (
    AttemptResult,
    CancelReason,
    Grounds,
    SolveOutcome,
    Strategy,
    Verdict,
)
from proofrace.observe.metrics import Metrics

_NS = 1e-9


def _us(ns: int) -> int:
    return ns // 1000


class Telemetry:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._log = structlog.get_logger("proofrace")
        # Attempts reported started and not yet finished: the in-flight gauge counts these,
        # whatever way they end (reaped, lost with their worker, or failed inside the server).
        self._started: set[str] = set()

    def solve_started(
        self, solve_id: str, goal_id: str, strategy: Strategy, provers: tuple[str, ...]
    ) -> None:
        self.metrics.solves_in_flight.inc()
        self._log.info(
            "solve.started",
            solve_id=solve_id,
            goal_id=goal_id,
            strategy=strategy.value,
            provers=list(provers),
        )

    def solve_refused(self, solve_id: str, goal_id: str, outcome: SolveOutcome) -> None:
        assert outcome.error is not None
        self.metrics.solves.labels(outcome.strategy.value, outcome.verdict.value).inc()
        self._log.warning(
            "solve.refused",
            solve_id=solve_id,
            goal_id=goal_id,
            error=outcome.error.kind.value,
            message=outcome.error.message,
        )

    def solve_waiting(self, solve_id: str, goal_id: str, wait_ms: int, why: str) -> None:
        self._log.info(
            "solve.waiting", solve_id=solve_id, goal_id=goal_id, wait_ms=wait_ms, why=why
        )

    def attempt_started(self, solve_id: str, attempt: str, prover: str, pid: int) -> None:
        if attempt not in self._started:
            self._started.add(attempt)
            self.metrics.attempts_in_flight.inc()
        self._log.info(
            "attempt.started", solve_id=solve_id, attempt=attempt, prover=prover, pid=pid
        )

    def cancel_requested(self, solve_id: str, reason: CancelReason) -> None:
        self.metrics.cancellations.labels(reason.cause.value).inc()
        self._log.info(
            "solve.cancel_requested",
            solve_id=solve_id,
            cause=reason.cause.value,
            message=reason.message,
        )

    def winner(self, solve_id: str, result: AttemptResult, elapsed_ns: int) -> None:
        self.metrics.wins.labels(result.prover).inc()
        self._log.info(
            "solve.winner",
            solve_id=solve_id,
            prover=result.prover,
            answer=result.answer.value,
            status=result.status,
            elapsed_us=_us(elapsed_ns),
        )

    def attempt_finished(self, solve_id: str, attempt: str, result: AttemptResult) -> None:
        ids = {"solve_id": solve_id, "attempt": attempt, "prover": result.prover}
        if result.worker:
            ids["worker"] = result.worker
        if attempt in self._started:
            self._started.discard(attempt)
            self.metrics.attempts_in_flight.dec()
        self.metrics.attempts.labels(result.prover, result.outcome.value).inc()
        if result.grounds is Grounds.CERTIFICATE_FAILED:
            self.metrics.wrong_answers.labels(result.prover).inc()
            self._log.error(
                "attempt.wrong_answer", **ids, answer=result.answer.value, message=result.message
            )
        if result.stop is not None:
            stop = result.stop
            self.metrics.preemption_latency.labels(stop.reason.cause.value, result.prover).observe(
                stop.latency_ns * _NS
            )
            self._log.info(
                "attempt.preempted",
                **ids,
                reason=stop.reason.cause.value,
                message=stop.reason.message,
                latency_us=_us(stop.latency_ns),
                escalated=stop.escalated,
            )
        # `reaped` only when a process of this attempt was seen to end; an attempt that never
        # started, or whose worker was lost, ended without anyone reaping it here.
        reaped = result.exit.code is not None or result.exit.signal is not None
        self._log.info(
            "attempt.reaped" if reaped else "attempt.ended",
            **ids,
            outcome=result.outcome.value,
            answer=result.answer.value,
            status=result.status,
            exit_code=result.exit.code,
            exit_signal=result.exit.signal,
            elapsed_us=_us(result.elapsed_ns),
            output_bytes=result.output_bytes,
            message=result.message or None,
        )

    def solve_finished(self, outcome: SolveOutcome, stop_latency_ns: int | None) -> None:
        m = self.metrics
        m.solves_in_flight.dec()
        m.solves.labels(outcome.strategy.value, outcome.verdict.value).inc()
        m.solve_duration.labels(outcome.strategy.value).observe(outcome.elapsed_ns * _NS)
        reason = next((a.stop.reason for a in outcome.attempts if a.stop is not None), None)
        if stop_latency_ns is not None and reason is not None:
            m.stop_latency.labels(reason.cause.value).observe(stop_latency_ns * _NS)
        if outcome.disagreement:
            m.disagreements.inc()
            self._log.error(
                "solve.disagreement",
                solve_id=outcome.solve_id,
                answers={a.prover: a.answer.value for a in outcome.attempts if a.answer.decisive},
                settled=outcome.conflict is None,
            )
        self._log.info(
            "solve.finished",
            solve_id=outcome.solve_id,
            goal_id=outcome.goal_id,
            verdict=outcome.verdict.value,
            winner=outcome.winner or None,
            grounds=outcome.grounds.value,
            cause=outcome.cancel_reason.cause.value if outcome.cancel_reason else None,
            error=outcome.error.kind.value if outcome.error else None,
            elapsed_us=_us(outcome.elapsed_ns),
            stop_latency_us=_us(stop_latency_ns) if stop_latency_ns is not None else None,
        )
        if outcome.verdict is Verdict.ERROR and outcome.error is not None:
            self._log.warning(
                "solve.error",
                solve_id=outcome.solve_id,
                error=outcome.error.kind.value,
                message=outcome.error.message,
            )

    def internal_error(self, solve_id: str, where: str, error: BaseException) -> None:
        self.metrics.internal_errors.inc()
        self._log.error("internal_error", solve_id=solve_id, where=where, exc_info=error)
