"""One client connection: its socket, and the solves started over it.

When the peer goes away, Cap'n Proto releases every capability it held before the
connection's disconnect promise resolves, so a token's finalizer cannot learn of the
disconnect from that promise. It asks the socket instead: a peek that finds end-of-file (or
an error, or a closed socket) means the peer is gone, while a live peer reads as "no data
yet" or as pending messages.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import weakref
from collections.abc import Callable

from proofrace.core.model import CancelCause, CancelReason
from proofrace.race.race import Solve
from proofrace.wire.calls import CallTracker
from proofrace.wire.limits import FrameWatch, PeerLimits

_ids = itertools.count(1)


class Connection:
    def __init__(self, sock: socket.socket, peer: str, calls: CallTracker | None = None) -> None:
        """`calls`: where calls served over it are counted (its listener's)."""
        self.id = next(_ids)
        self.peer = peer
        self.calls = calls if calls is not None else CallTracker()
        self._sock = sock
        self._closed = False
        self._solves: weakref.WeakSet[Solve] = weakref.WeakSet()
        self._on_close: list[Callable[[], None]] = []
        self.opened_at = self.last_activity = time.monotonic()
        self.authenticated = False
        # Subject organizational units of a verified client certificate (TLS), if any.
        self.certificate_units: frozenset[str] = frozenset()
        # Who the caller is, for its share of the server: its address, its uid on a Unix
        # socket, or its certificate's subject.
        self.identity = self.peer_host
        self.limits = PeerLimits()
        self.frames: FrameWatch | None = None  # set by the listener
        self.calls_in_flight = 0
        self._answers_while_paused = 0
        # Set with drop_requested when a bound is exceeded: answers still queued are discarded.
        self.abort = False
        # Set when the server decides to drop the peer (too many failed logins, say).
        self.drop_requested = asyncio.Event()
        self.drop_reason = ""

    @property
    def socket(self) -> socket.socket:
        return self._sock

    @property
    def peer_host(self) -> str:
        """The peer's address without its port: what limits per address count by."""
        host, sep, _ = self.peer.rpartition(":")
        return host if sep else self.peer

    def track(self, solve: Solve) -> None:
        self._solves.add(solve)

    def running_solves(self) -> int:
        return sum(1 for solve in self._solves if not solve.done)

    def touch(self) -> None:
        """The peer made a call: it is alive."""
        self.last_activity = time.monotonic()

    def call_started(self) -> None:
        self.touch()
        self.calls_in_flight += 1
        if self.calls_in_flight > self.limits.max_calls_in_flight:
            self.exceeded("calls in flight")

    def call_finished(self) -> None:
        self.calls_in_flight -= 1
        if self.frames is None or self.frames.paused_at is None:
            self._answers_while_paused = 0
            return
        self._answers_while_paused += 1  # its answer waits behind a peer that reads nothing
        if self._answers_while_paused > self.limits.max_answers_unread:
            self.exceeded("answers left unread")

    def exceeded(self, what: str) -> None:
        """A bound was exceeded: drop the peer, discarding what is queued for it."""
        if not self.drop_requested.is_set():
            self.drop_reason = what
            self.abort = True
            self.drop_requested.set()

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    def is_closed(self) -> bool:
        if self._closed:
            return True
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:  # reset, or the transport already closed the socket (fd is -1)
            return True

    def mark_closed(self) -> None:
        """The connection is gone: whatever it started and still runs is cancelled."""
        if self._closed:
            return
        self._closed = True
        reason = CancelReason(CancelCause.DISCONNECTED, "the client's connection closed")
        for solve in list(self._solves):
            solve.cancel(reason)
        for callback in self._on_close:
            callback()


async def dial(host: str, port: int) -> socket.socket:
    """A connected TCP socket, kept by the caller so it can be peeked like an accepted one."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
    except OSError:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
