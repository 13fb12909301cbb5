"""Deciding a race: when to stop early, who won, and what the verdict is. Pure logic."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    CancelCause,
    CancelReason,
    ErrorKind,
    SolveError,
    Strategy,
    Verdict,
)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    winner: str = ""
    cancel_reason: CancelReason | None = None
    error: SolveError | None = None


class Judge:
    """Fed each attempt's result as it finishes; says when the race is decided."""

    def __init__(self, strategy: Strategy, quorum: int) -> None:
        self._strategy = strategy
        self._quorum = quorum
        self._results: list[AttemptResult] = []
        self._votes: Counter[Answer] = Counter()
        self.winner: AttemptResult | None = None

    def record(self, result: AttemptResult) -> bool:
        """True when this result decides the race: every other attempt should stop now."""
        self._results.append(result)
        if self.winner is not None or not _counts(result):
            return False
        self._votes[result.answer] += 1
        if self._strategy is Strategy.FIRST_WINS:
            self.winner = result
        elif self._strategy is Strategy.QUORUM and self._votes[result.answer] >= self._quorum:
            self.winner = next(r for r in self._results if _counts(r) and r.answer is result.answer)
        return self.winner is not None

    @property
    def disagreement(self) -> bool:
        answers = {r.answer for r in self._results if r.answer.decisive}
        return len(answers) > 1

    def decide(self, cancelled: CancelReason | None) -> Decision:
        """The verdict once every attempt has ended; `cancelled` is an external cancel."""
        winner = self.winner
        if winner is None and self._strategy is Strategy.ALL:
            winner = next((r for r in self._results if _counts(r)), None)
        if winner is not None:
            verdict = Verdict.PROVED if winner.answer is Answer.PROVED else Verdict.REFUTED
            return Decision(verdict, winner=winner.prover)
        if cancelled is not None:
            if cancelled.cause is CancelCause.TIMEOUT:
                return Decision(Verdict.TIMEOUT, cancel_reason=cancelled)
            return Decision(Verdict.CANCELLED, cancel_reason=cancelled)
        if any(r.outcome in _UNDECIDED for r in self._results):
            return Decision(Verdict.UNKNOWN)
        return Decision(Verdict.ERROR, error=_error_of(self._results))


_UNDECIDED = {
    AttemptOutcome.NO_PROOF_FOUND,
    AttemptOutcome.TIMEOUT,
    AttemptOutcome.PROVED,
    AttemptOutcome.INCONSISTENT_PREMISES,
}
_ERROR_KIND = {
    AttemptOutcome.INVALID_INPUT: ErrorKind.INVALID_INPUT,
    AttemptOutcome.SYSTEM_ERROR: ErrorKind.SYSTEM_ERROR,
}


def _counts(result: AttemptResult) -> bool:
    """A decisive answer from an attempt that ended on its own, free of errors."""
    return result.stop is None and result.answer.decisive and result.outcome in _ANSWERING


_ANSWERING = {
    AttemptOutcome.PROVED,
    AttemptOutcome.NO_PROOF_FOUND,
    AttemptOutcome.INCONSISTENT_PREMISES,
}


def _error_of(results: list[AttemptResult]) -> SolveError:
    if not results:
        return SolveError(ErrorKind.SYSTEM_ERROR, "no attempt ran")
    # Input errors first: if any prover rejected the text, that is what the caller must fix.
    for kind_outcome in (AttemptOutcome.INVALID_INPUT, AttemptOutcome.UNSUPPORTED_FEATURE):
        for r in results:
            if r.outcome is kind_outcome:
                kind = _ERROR_KIND.get(kind_outcome, ErrorKind.PROVER_ERROR)
                return SolveError(kind, f"{r.prover}: {r.message}")
    first = results[0]
    kind = _ERROR_KIND.get(first.outcome, ErrorKind.PROVER_ERROR)
    return SolveError(kind, f"{first.prover}: {first.message}")
