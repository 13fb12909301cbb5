"""One cached verdict: a decisive answer, its grounds, and where it came from."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from proofrace.cache.key import CacheKey
from proofrace.core.model import Grounds, SolveOutcome, Verdict

# Grounds that `certifiedOnly` accepts: checked by a certificate, or confirmed by a second prover.
CERTIFIED = frozenset({Grounds.MODEL_CHECKED, Grounds.PROOF_CHECKED, Grounds.CONFIRMED})
DECISIVE = frozenset({Verdict.PROVED, Verdict.REFUTED})


@dataclass(frozen=True)
class Entry:
    key: str
    verdict: Verdict  # proved or refuted
    grounds: Grounds
    winner: str
    solve_id: str  # the solve that found it
    found_us: int  # microseconds since the Unix epoch
    provers: tuple[tuple[str, str], ...]  # (name, version) of every prover in its race

    @property
    def certified(self) -> bool:
        return self.grounds in CERTIFIED

    def to_json(self) -> str:
        return json.dumps(
            {
                "verdict": self.verdict.value,
                "grounds": self.grounds.value,
                "winner": self.winner,
                "solve_id": self.solve_id,
                "found_us": self.found_us,
                "provers": [list(p) for p in self.provers],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, key: str, text: str | bytes) -> Entry:
        data = json.loads(text)
        return cls(
            key=key,
            verdict=Verdict(data["verdict"]),
            grounds=Grounds(data["grounds"]),
            winner=str(data["winner"]),
            solve_id=str(data["solve_id"]),
            found_us=int(data["found_us"]),
            provers=tuple((str(name), str(version)) for name, version in data["provers"]),
        )


def entry_for(key: CacheKey, outcome: SolveOutcome) -> Entry | None:
    """The entry to store for a race's outcome, or None when it must not be stored: only a
    decisive verdict that no decisive answer contradicted, and whose certificate did not fail.
    Timeouts, unknowns, cancels and errors are never verdicts."""
    if outcome.verdict not in DECISIVE or outcome.disagreement:
        return None
    if outcome.grounds is Grounds.CERTIFICATE_FAILED:
        return None
    # A decisive answer with no grounds stated is one prover's word.
    grounds = Grounds.UNCHECKED if outcome.grounds is Grounds.NONE else outcome.grounds
    return Entry(
        key=key.digest,
        verdict=outcome.verdict,
        grounds=grounds,
        winner=outcome.winner,
        solve_id=outcome.solve_id,
        found_us=time.time_ns() // 1000,
        provers=key.provers,
    )
