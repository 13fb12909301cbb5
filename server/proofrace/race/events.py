"""What a race reports as it runs. Metrics and logs implement this; the race knows neither."""

from __future__ import annotations

from typing import Protocol

from proofrace.core.model import AttemptResult, CancelReason, SolveOutcome, Strategy


class RaceObserver(Protocol):
    def solve_started(
        self, solve_id: str, goal_id: str, strategy: Strategy, provers: tuple[str, ...]
    ) -> None: ...

    def solve_refused(self, solve_id: str, goal_id: str, outcome: SolveOutcome) -> None: ...

    def solve_waiting(self, solve_id: str, goal_id: str, wait_ms: int, why: str) -> None:
        """No prover is available for it yet: it waits up to `wait_ms` for one."""
        ...

    def attempt_started(self, solve_id: str, attempt: str, prover: str, pid: int) -> None: ...

    def cancel_requested(self, solve_id: str, reason: CancelReason) -> None: ...

    def winner(self, solve_id: str, result: AttemptResult, elapsed_ns: int) -> None: ...

    def attempt_finished(self, solve_id: str, attempt: str, result: AttemptResult) -> None: ...

    def solve_finished(self, outcome: SolveOutcome, stop_latency_ns: int | None) -> None:
        """`stop_latency_ns`: from the race's end being triggered to its last attempt reaped."""
        ...

    def internal_error(self, solve_id: str, where: str, error: BaseException) -> None: ...
