"""Live state of one attempt: written by its backend, read by status snapshots."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proofrace.core.model import AttemptOutcome, AttemptState, AttemptStatus


@dataclass
class AttemptProgress:
    prover: str
    attempt_id: str = ""  # "<solve id>.<index>"
    on_started: Callable[[int], None] = lambda _pid: None
    state: AttemptState = AttemptState.STARTING
    created_ns: int = field(default_factory=time.monotonic_ns)
    finished_ns: int | None = None
    started_ns: int | None = None  # when its process started (as seen here)
    pid: int | None = None
    outcome: AttemptOutcome | None = None
    output_bytes: Callable[[], int] = lambda: 0

    def started(self, pid: int) -> None:
        self.started_ns = time.monotonic_ns()
        self.pid = pid
        self.state = AttemptState.RUNNING
        self.on_started(pid)

    def stopping(self) -> None:
        if self.state is not AttemptState.FINISHED:
            self.state = AttemptState.STOPPING

    def finished(self, outcome: AttemptOutcome) -> None:
        self.state = AttemptState.FINISHED
        self.outcome = outcome
        self.finished_ns = time.monotonic_ns()

    def snapshot(self) -> AttemptStatus:
        end = self.finished_ns if self.finished_ns is not None else time.monotonic_ns()
        return AttemptStatus(
            prover=self.prover,
            state=self.state,
            outcome=self.outcome,
            elapsed_ns=end - self.created_ns,
            output_bytes=self.output_bytes(),
        )
