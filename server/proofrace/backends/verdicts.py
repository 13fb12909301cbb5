"""Reading a prover's verdict from its output, line by line as it arrives.

Scanning as the bytes stream in (instead of after the fact) keeps memory bounded however much a
prover prints, and lets the output tail be small without losing an early status line.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass

# A line longer than this is cut before matching: status lines are short, models are not.
MAX_LINE_BYTES = 4096


class Finding(enum.Enum):
    PROVED = "proved"
    REFUTED = "refuted"
    UNKNOWN = "unknown"
    INCONSISTENT_PREMISES = "inconsistentPremises"
    TIMEOUT = "timeout"
    INVALID_INPUT = "invalidInput"
    UNSUPPORTED_FEATURE = "unsupportedFeature"
    PROVER_ERROR = "proverError"

    @property
    def is_answer(self) -> bool:
        return self in _ANSWERS


_ANSWERS = {
    Finding.PROVED,
    Finding.REFUTED,
    Finding.UNKNOWN,
    Finding.INCONSISTENT_PREMISES,
    Finding.TIMEOUT,
}


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    finding: Finding


@dataclass(frozen=True)
class Match:
    finding: Finding
    line: str
    message: str


class OutputScanner:
    """Consumes combined stdout+stderr; keeps the last answer, the first error and a tail."""

    def __init__(self, rules: tuple[Rule, ...], tail_bytes: int, keep_bytes: int = 0) -> None:
        """`keep_bytes`: also keep the output whole, up to that size (for reading a model)."""
        self._rules = rules
        self._keep_cap = keep_bytes
        self._kept = bytearray()
        self._kept_all = True
        self._partial = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self._tail_cap = tail_bytes
        self.total_bytes = 0
        self.answer: Match | None = None
        self.error: Match | None = None

    def feed(self, data: bytes) -> None:
        self.total_bytes += len(data)
        self._keep_tail(data)
        if self._keep_cap:
            if len(self._kept) + len(data) <= self._keep_cap:
                self._kept += data
            else:
                self._kept_all = False
        self._partial += data
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest[:MAX_LINE_BYTES])
        for line in lines:
            self._scan(bytes(line[:MAX_LINE_BYTES]))

    def close(self) -> None:
        if self._partial:
            self._scan(bytes(self._partial))
            self._partial.clear()

    @property
    def kept(self) -> bytes | None:
        """The whole output when it was kept and fit; None otherwise."""
        return bytes(self._kept) if self._keep_cap and self._kept_all else None

    @property
    def tail(self) -> str:
        return b"".join(self._tail)[-self._tail_cap :].decode(errors="replace")

    def _keep_tail(self, data: bytes) -> None:
        if self._tail_cap <= 0:
            return
        self._tail.append(data[-self._tail_cap :])
        self._tail_len += len(self._tail[-1])
        while self._tail_len - len(self._tail[0]) >= self._tail_cap:
            self._tail_len -= len(self._tail.popleft())

    def _scan(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip("\r")
        for rule in self._rules:
            found = rule.pattern.search(line)
            if found is None:
                continue
            message = found.groupdict().get("message") or line
            match = Match(rule.finding, line.strip(), message.strip())
            if rule.finding.is_answer:
                self.answer = match  # the last answer counts: it answers the last check
            elif self.error is None:
                self.error = match  # the first error is the cause; later ones follow from it
            return
