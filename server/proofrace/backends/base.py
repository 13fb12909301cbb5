"""What the race asks of a backend: run one attempt of one prover, honouring a cancel scope."""

from __future__ import annotations

import time
from typing import Protocol

from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    AttemptOutcome,
    AttemptResult,
    CancelCause,
    Problem,
    ProverInfo,
    Stop,
)
from proofrace.core.progress import AttemptProgress


class Backend(Protocol):
    def catalog(self) -> list[ProverInfo]:
        """Every prover this backend knows, installed or not."""
        ...

    async def run(
        self,
        prover: str,
        problem: Problem,
        *,
        timeout_s: float,
        scope: CancelScope,
        progress: AttemptProgress,
    ) -> AttemptResult:
        """Run one attempt to its end and report it; never raises for a prover's failure.

        When `scope` is cancelled the attempt must be stopped and reaped before returning,
        and reported with the scope's reason and the latency from `scope.called_ns`.
        """
        ...


def stopped_outcome(stop: Stop) -> AttemptOutcome:
    """A deadline reads as the host's `timeout`; every other stop as `cancelled`."""
    if stop.reason.cause is CancelCause.TIMEOUT:
        return AttemptOutcome.TIMEOUT
    return AttemptOutcome.CANCELLED


def not_started(prover: str, scope: CancelScope) -> AttemptResult:
    """An attempt whose scope was cancelled before its process could start."""
    assert scope.reason is not None
    called = scope.called_ns or time.monotonic_ns()
    stop = Stop(scope.reason, latency_ns=time.monotonic_ns() - called, escalated=False)
    return AttemptResult(prover, stopped_outcome(stop), stop=stop)
