"""What the race asks of a backend: run one attempt of one prover, honouring a cancel scope."""

from __future__ import annotations

from typing import Protocol

from proofrace.core.cancel import CancelScope
from proofrace.core.model import AttemptResult, Problem, ProverInfo
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
