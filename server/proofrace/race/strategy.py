"""Deciding a race: when to stop early, who won, and what the verdict is. Pure logic.

Which answers count: a decisive answer (proved or refuted) from an attempt that ended on its
own, without an error. z3, for one, prints `sat` after an error on input it could not read:
that answer does not count, and cannot disagree with anything. An answer whose certificate
failed is reported as the prover's error and does not count either.

How contradictions are settled, under every strategy:
- a certified answer (model checked, proof checked) is certain: it beats any uncertified
  answer, whatever arrived first;
- contradicting answers with no certificate on either side are a conflict: the verdict is
  `unknown`, `conflict` names both sides, and neither is reported as the verdict.

When a race stops early:
- `firstWins`: at the first answer that counts; later answers only come from attempts that
  finished before the preemption could reach them. An uncertified first answer wins when
  nothing contradicts it: that is what `firstWins` means. A request that wants more sets
  `confirm`.
- `quorum`: once `quorum` independent provers agree and none contradicts them.
- `all`: never.
- any strategy but `all`: at once on a certified answer.
- `confirm`: an uncertified answer counts as decided only once a second, independent prover
  (another engine) gives the same answer; without that the verdict is not a decisive one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    CancelCause,
    CancelReason,
    Conflict,
    ErrorKind,
    Grounds,
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
    grounds: Grounds = Grounds.NONE
    conflict: Conflict | None = None


class Judge:
    """Fed each attempt's result as it finishes; says when the race is decided.

    `engines` maps a prover to the engine behind it (two entries running the same solver
    with other options are not independent); a prover missing from it is its own engine.
    """

    def __init__(
        self,
        strategy: Strategy,
        quorum: int,
        *,
        confirm: bool = False,
        engines: Mapping[str, str] | None = None,
    ) -> None:
        self._strategy = strategy
        self._quorum = quorum
        self._confirm = confirm
        self._engines = dict(engines or {})
        self._results: list[AttemptResult] = []
        self._answers: list[AttemptResult] = []  # the ones that count, in arrival order
        self.winner: AttemptResult | None = None  # the answer that stopped the race early

    def record(self, result: AttemptResult) -> bool:
        """True when this result decides the race: every other attempt should stop now."""
        self._results.append(result)
        if not counts(result):
            return False
        self._answers.append(result)
        if self.winner is not None or self._strategy is Strategy.ALL:
            return False
        if _certified(result) and not self._sides_certified_both():
            self.winner = result
        elif not self._contradicted():
            side = self._side(result.answer)
            if self._independent(side) >= self._needed():
                self.winner = side[0]
        return self.winner is not None

    def prefer_earliest(self, answered_ns: dict[str, int]) -> None:
        """First wins means first to answer. Results may be recorded in another order than
        their answers came (a remote answer's trip, a pipe drained later), so once every
        attempt has ended, the winner is the counting result that answered first."""
        if self._strategy is not Strategy.FIRST_WINS:
            return
        self._answers.sort(key=lambda r: answered_ns.get(r.prover, math.inf))
        if self.winner is not None:
            self.winner = self._side(self.winner.answer)[0]

    @property
    def disagreement(self) -> bool:
        """Answers that count contradict each other (settled by a certificate or not)."""
        return self._contradicted()

    def decide(self, cancelled: CancelReason | None) -> Decision:
        """The verdict once every attempt has ended; `cancelled` is an external cancel."""
        settled = self._settle()
        if settled is not None:
            return settled
        if cancelled is not None:
            if cancelled.cause is CancelCause.TIMEOUT:
                return Decision(Verdict.TIMEOUT, cancel_reason=cancelled)
            return Decision(Verdict.CANCELLED, cancel_reason=cancelled)
        if any(r.outcome in _RAN_WITHOUT_ERROR for r in self._results):
            return Decision(Verdict.UNKNOWN)
        # Attempts stopped by the shutdown of the places running them (workers draining, with
        # nowhere left to go): the solve was cancelled by that shutdown, not failed.
        shutdown = next(
            (
                r.stop.reason
                for r in self._results
                if r.stop is not None and r.stop.reason.cause is CancelCause.SHUTDOWN
            ),
            None,
        )
        if shutdown is not None:
            return Decision(Verdict.CANCELLED, cancel_reason=shutdown)
        return Decision(Verdict.ERROR, error=_error_of(self._results))

    # --- the rules -----------------------------------------------------------------------

    def _settle(self) -> Decision | None:
        """A decisive verdict or a conflict from the answers that count; None when neither."""
        if not self._answers:
            return None
        certified = [a for a in self._answers if _certified(a)]
        if certified and not self._sides_certified_both():
            best = certified[0]
            return Decision(_VERDICT[best.answer], winner=best.prover, grounds=best.grounds)
        if self._contradicted():
            return Decision(
                Verdict.UNKNOWN,
                conflict=Conflict(
                    proved=tuple(a.prover for a in self._side(Answer.PROVED)),
                    refuted=tuple(a.prover for a in self._side(Answer.REFUTED)),
                ),
            )
        side = self._answers  # all agree
        independent = self._independent(side)
        if self._strategy is Strategy.QUORUM and self.winner is None:
            return None  # the quorum was not reached
        if independent < (2 if self._confirm else 1):
            return None  # not confirmed, as the request demanded
        grounds = Grounds.CONFIRMED if independent >= 2 else Grounds.UNCHECKED
        return Decision(_VERDICT[side[0].answer], winner=side[0].prover, grounds=grounds)

    def _needed(self) -> int:
        """Independent agreeing answers that stop the race early."""
        needed = self._quorum if self._strategy is Strategy.QUORUM else 1
        return max(needed, 2) if self._confirm else needed

    def _side(self, answer: Answer) -> list[AttemptResult]:
        return [a for a in self._answers if a.answer is answer]

    def _contradicted(self) -> bool:
        return len({a.answer for a in self._answers}) > 1

    def _sides_certified_both(self) -> bool:
        return len({a.answer for a in self._answers if _certified(a)}) > 1

    def _independent(self, side: list[AttemptResult]) -> int:
        return len({self._engines.get(a.prover, a.prover) for a in side})


_VERDICT = {Answer.PROVED: Verdict.PROVED, Answer.REFUTED: Verdict.REFUTED}

# Attempts that ran and ended without an error, answering or not: with one of these and no
# decisive verdict the solve is `unknown` rather than an `error`.
_RAN_WITHOUT_ERROR = {
    AttemptOutcome.NO_PROOF_FOUND,
    AttemptOutcome.TIMEOUT,
    AttemptOutcome.PROVED,
    AttemptOutcome.INCONSISTENT_PREMISES,
}
_ERROR_KIND = {
    AttemptOutcome.INVALID_INPUT: ErrorKind.INVALID_INPUT,
    AttemptOutcome.SYSTEM_ERROR: ErrorKind.SYSTEM_ERROR,
}


def counts(result: AttemptResult) -> bool:
    """A decisive answer from an attempt that ended on its own, free of errors, and whose
    certificate (if it was checked) held."""
    return (
        result.stop is None
        and result.answer.decisive
        and result.outcome in _ANSWERING
        and result.grounds is not Grounds.CERTIFICATE_FAILED
    )


def _certified(result: AttemptResult) -> bool:
    return result.grounds.certified


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
                return SolveError(kind, f"{r.prover}: {_said(r)}")
    first = results[0]
    kind = _ERROR_KIND.get(first.outcome, ErrorKind.PROVER_ERROR)
    return SolveError(kind, f"{first.prover}: {_said(first)}")


def _said(result: AttemptResult) -> str:
    """What an attempt said, never empty: its message, or else how it ended."""
    if result.message:
        return result.message
    if result.stop is not None:
        return f"{result.outcome.value}: {result.stop.reason}"
    return f"{result.outcome.value}, with no message"
