"""Bounds on what one peer may hold: connections, calls, unread answers, unfinished messages,
and its share of the solves and attempts.

Every bound is answered with a value (`overloaded`, `invalidRequest`) or a closed connection,
never with memory that grows. Cap'n Proto's own reader allocates a message's declared size as
soon as the frame header arrives, so an unfinished frame holds memory: `FrameWatch` follows
the frame boundaries in the byte stream (`frames.py`: header arithmetic only, no copy) and
the listener drops a peer whose message stays unfinished too long, or whose first one never
completes. pycapnp pauses its writes when the transport's buffer is full, and queues answers
inside the RPC system meanwhile: a peer that does not read is seen as writes paused, and
dropped once paused for too long or once too many answers were produced while paused.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any

from proofrace.core.model import ErrorKind, SolveError, SolveRequest
from proofrace.race.race import Solve
from proofrace.wire.frames import FrameCursor, WholeFramesProtocol


@dataclass(frozen=True)
class PeerLimits:
    max_connections: int = 512  # in total
    max_connections_per_address: int = 64
    max_calls_in_flight: int = 256  # per connection (result() waiters included)
    max_result_waiters: int = 16  # per token
    first_message_s: float = 10.0  # from accept to the first complete message
    message_s: float = 30.0  # a message begun must be complete within this
    write_stall_s: float = 30.0  # writes paused (the peer reads nothing) for this long
    max_answers_unread: int = 1024  # answers produced while writes are paused
    max_solves_per_identity: int = 64  # in flight, over all its connections
    max_attempts_per_identity: int = 128
    max_goal_id_chars: int = 256
    max_reason_chars: int = 1024
    max_prover_name_chars: int = 64


class ConnectionCounter:
    """Connections open, in total and per peer address (Unix peers count in total only)."""

    def __init__(self, limits: PeerLimits) -> None:
        self._limits = limits
        self._by_address: Counter[str] = Counter()
        self.total = 0

    def admit(self, address: str | None) -> str | None:
        """Count the connection in; or say why it is refused (then nothing is counted)."""
        if self.total >= self._limits.max_connections:
            return f"{self.total} connections open, the server's limit"
        if address is not None:
            if self._by_address[address] >= self._limits.max_connections_per_address:
                return f"{self._by_address[address]} connections from {address}, its limit"
            self._by_address[address] += 1
        self.total += 1
        return None

    def release(self, address: str | None) -> None:
        self.total -= 1
        if address is not None:
            self._by_address[address] -= 1
            if self._by_address[address] <= 0:
                del self._by_address[address]


class FrameWatch(WholeFramesProtocol):
    """Wraps pycapnp's stream protocol: passes everything through (a turn's writes in one send),
    and notes where each frame received begins and ends, and whether writes are paused."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._buffer: memoryview | None = None
        self._cursor = FrameCursor()
        self.frames = 0  # complete frames received
        self.started_at: float | None = None  # when the unfinished frame began (None: none)
        self.paused_at: float | None = None  # when writes were paused (None: not paused)

    def get_buffer(self, sizehint: int) -> Any:
        buffer = self._inner.get_buffer(sizehint)
        self._buffer = memoryview(buffer).cast("B")
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._buffer is not None:
            done = self._cursor.feed(self._buffer[:nbytes])
            self.frames += done
            if not self._cursor.inside:
                self.started_at = None
            elif done or self.started_at is None:
                self.started_at = time.monotonic()
        self._inner.buffer_updated(nbytes)

    def pause_writing(self) -> None:
        self.paused_at = time.monotonic()
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self.paused_at = None
        self._inner.resume_writing()


def check_request(request: SolveRequest, limits: PeerLimits) -> SolveError | None:
    """Text fields beyond their caps: the request is refused, and nothing of it is logged
    beyond the caps."""
    if len(request.goal_id) > limits.max_goal_id_chars:
        return SolveError(
            ErrorKind.INVALID_REQUEST,
            f"goalId is longer than {limits.max_goal_id_chars} characters",
        )
    if any(len(name) > limits.max_prover_name_chars for name in request.provers):
        return SolveError(
            ErrorKind.INVALID_REQUEST,
            f"a prover name is longer than {limits.max_prover_name_chars} characters",
        )
    return None


class IdentityShare:
    """Solves and attempts in flight per caller identity, over all its connections, so one
    caller cannot take every slot of the server."""

    def __init__(self, limits: PeerLimits) -> None:
        self._limits = limits
        # Weak: a finished solve leaves no trace here once the wire lets it go. Each with its
        # number of attempts, counted once (a status snapshot per solve per call costs), or 0
        # for one waiting for capacity, whose attempts are counted when it has them.
        self._solves: dict[str, weakref.WeakKeyDictionary[Solve, int]] = {}

    def refusal(self, identity: str) -> SolveError | None:
        tracked = self._solves.get(identity)
        running = (
            [n if n else len(s.status().attempts) for s, n in tracked.items() if not s.done]
            if tracked
            else []
        )
        if len(running) >= self._limits.max_solves_per_identity:
            return _overloaded(f"{len(running)} solves in flight for this caller, its share")
        attempts = sum(running)
        if attempts >= self._limits.max_attempts_per_identity:
            return _overloaded(f"{attempts} attempts in flight for this caller, its share")
        return None

    def track(self, identity: str, solve: Solve) -> None:
        if solve.done:
            return
        if len(self._solves) > 4096:  # forget callers with nothing in flight
            for idle in [i for i, solves in self._solves.items() if not solves]:
                del self._solves[idle]
        attempts = len(solve.status().attempts)
        self._solves.setdefault(identity, weakref.WeakKeyDictionary())[solve] = attempts


def _overloaded(message: str) -> SolveError:
    return SolveError(ErrorKind.OVERLOADED, f"{message}; retry later")
