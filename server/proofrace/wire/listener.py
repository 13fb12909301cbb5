"""Accepting connections (TCP and Unix) and serving one bootstrap capability per connection.

The accept loop is ours rather than pycapnp's create_server, so that each connection keeps
its socket object: the token finalizer peeks it to tell a dropped token from a lost peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import math
import os
import socket
import ssl
import stat
import struct
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import capnp
import structlog

from proofrace.wire.calls import CallTracker
from proofrace.wire.connection import Connection
from proofrace.wire.limits import ConnectionCounter, FrameWatch, PeerLimits

_log = structlog.get_logger("proofrace.wire")
_BACKLOG = 128
# After the last call returns, its answer still has to be written by the RPC system (a few
# turns of the event loop); closing before that would cut it off.
_FLUSH_S = 0.05
_TLS_HANDSHAKE_S = 10.0
# After a failed accept (out of descriptors, say), a pause before the next.
_ACCEPT_RETRY_S = 0.1
# How often the per-peer deadlines (an unfinished message, writes paused) are looked at.
_CHECK_EVERY_S = 1.0


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "tcp" or "unix"
    address: str  # "host:port" or the socket's path

    def __str__(self) -> str:
        return self.address if self.kind == "tcp" else f"unix:{self.address}"


def _private_directory(directory: Path) -> None:
    """Create the socket's directory 0700 (and any missing parent), or check that an existing
    one, and every directory above it, is such that no other user can swap it for theirs."""
    trusted_path(directory)


def trusted_path(directory: Path) -> None:
    """Every directory from / down to `directory` (created 0700 where missing) belongs to
    root or to this user, and is writable by no one else, unless sticky (like /tmp), where
    each user can only rename what is theirs. A symbolic link on the way must be ours or
    root's too, and what it points to passes the same test. Raises OSError otherwise."""
    me = os.getuid()
    current = Path("/")
    for part in directory.absolute().parts[1:]:
        current = current / part
        try:
            info = current.lstat()
        except FileNotFoundError:
            current.mkdir(mode=0o700)
            info = current.lstat()
        if info.st_uid not in (0, me):
            raise OSError(f"{current} belongs to another user (uid {info.st_uid})")
        if stat.S_ISLNK(info.st_mode):
            trusted_path(current.resolve())
            continue
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise OSError(f"{current} is writable by others")


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class RpcListener:
    """Serves `bootstrap(connection)` as the bootstrap capability of each connection."""

    def __init__(
        self,
        bootstrap: Callable[[Connection], Any],
        *,
        traversal_limit_words: int,
        tls: ssl.SSLContext | None = None,
        idle_timeout_s: float = 0.0,
        login_timeout_s: float = 0.0,
        on_connections: Callable[[int], None] = lambda _n: None,
        on_accept_failed: Callable[[], None] = lambda: None,
        on_internal_error: Callable[[], None] = lambda: None,
        limits: PeerLimits | None = None,
    ) -> None:
        """`login_timeout_s` > 0: a connection not authenticated by then is closed."""
        self._limits = limits or PeerLimits()
        self._counter = ConnectionCounter(self._limits)
        self._bootstrap = bootstrap
        self._tls = tls
        self._idle_timeout_s = idle_timeout_s
        self._login_timeout_s = login_timeout_s
        self._traversal_limit = traversal_limit_words
        self._on_connections = on_connections
        self._on_accept_failed = on_accept_failed
        self._sockets: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._serving: set[asyncio.Task[None]] = set()
        self._unix_paths: list[Path] = []
        # Calls in progress on this listener's connections, and their unexpected faults.
        self._calls = CallTracker(on_fault=on_internal_error)

    async def listen_tcp(self, host: str, port: int) -> Endpoint:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        bound = sock.getsockname()
        return self._listen(sock, Endpoint("tcp", f"{bound[0]}:{bound[1]}"))

    def listen_unix(self, path: str) -> Endpoint:
        target = Path(path)
        _private_directory(target.parent)
        if target.exists() and stat.S_ISSOCK(target.stat().st_mode):
            if _answers(target):
                raise OSError(f"another server is listening on {target}")
            target.unlink()  # a stale socket from a server that did not exit cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # born 0600: no window in which others may connect
        try:
            sock.bind(str(target))
        finally:
            os.umask(old_umask)
        self._unix_paths.append(target)
        return self._listen(sock, Endpoint("unix", str(target)))

    def _listen(self, sock: socket.socket, endpoint: Endpoint) -> Endpoint:
        sock.listen(_BACKLOG)
        sock.setblocking(False)
        self._sockets.append(sock)
        self._accepting.append(asyncio.create_task(self._accept_loop(sock, endpoint)))
        return endpoint

    async def _accept_loop(self, listening: socket.socket, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listening)
            except OSError as error:  # e.g. EMFILE: log, count, and let the loop breathe
                _log.error("connection.accept_failed", endpoint=str(endpoint), exc_info=error)
                self._on_accept_failed()
                await asyncio.sleep(_ACCEPT_RETRY_S)
                continue
            if endpoint.kind == "tcp":
                # A vanished host (power loss, partition) sends no FIN: probe after a minute of
                # silence, give up after five unanswered probes ten seconds apart.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
                # Small answers go out at once: with Nagle's algorithm an answer that follows
                # another waits for the peer's delayed ACK (about 40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer_name = f"{peer[0]}:{peer[1]}" if endpoint.kind == "tcp" else "unix"
            address = peer[0] if endpoint.kind == "tcp" else None
            refused = self._counter.admit(address)
            if refused is not None:
                # Closed at once, before any buffer is allocated for it.
                _log.warning("connection.refused", peer=peer_name, why=refused)
                sock.close()
                continue
            tls = self._tls if endpoint.kind == "tcp" else None
            task = asyncio.create_task(self._serve(sock, peer_name, tls))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
            task.add_done_callback(functools.partial(self._released, address))

    def _released(self, address: str | None, _task: asyncio.Task[None]) -> None:
        self._counter.release(address)

    async def _serve(self, sock: socket.socket, peer: str, tls: ssl.SSLContext | None) -> None:
        connection = Connection(sock, peer, self._calls)
        connection.limits = self._limits
        if sock.family == socket.AF_UNIX:
            connection.identity = f"uid:{_peer_uid(sock)}"
        log = _log.bind(connection=connection.id, peer=peer)
        log.info("connection.opened")
        self._on_connections(+1)
        server = None
        stream = None
        try:
            stream, connection.frames, connection.certificate_units = await _stream(sock, tls)
            server = capnp.TwoPartyServer(
                stream,
                bootstrap=self._bootstrap(connection),
                traversal_limit_in_words=self._traversal_limit,
            )
            await self._until_closed(server, connection)
            log.info("connection.closed")
        except asyncio.CancelledError:
            log.info("connection.closed", by="server")
            raise
        except Exception as error:  # a malformed stream ends this connection only
            first_line = (str(error).splitlines() or [type(error).__name__])[0]
            log.warning("connection.failed", error=first_line[:200])
        finally:
            connection.mark_closed()
            self._on_connections(-1)
            if connection.abort and connection.frames and connection.frames.transport:
                connection.frames.transport.abort()  # what it did not read is dropped
            if stream is not None:
                stream.close()  # closes the transport after its buffer is flushed
            else:
                sock.close()  # the stream never formed (a failed TLS handshake, say)
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()

    async def _until_closed(self, server: Any, connection: Connection) -> None:
        """Until the peer goes, or the server drops it: silent past the idle timeout, not
        logged in by the login timeout, or too many failed logins."""
        disconnected = asyncio.ensure_future(server.on_disconnect())
        dropped = asyncio.ensure_future(connection.drop_requested.wait())
        try:
            while not disconnected.done():
                why, at = ("dropped", 0.0) if dropped.done() else self._next_deadline(connection)
                if at <= time.monotonic():
                    if why not in ("dropped", "idle_timeout", "login_timeout"):
                        connection.abort = True  # a bound: what is queued for it goes too
                    _log.warning(
                        f"connection.{why}",
                        connection=connection.id,
                        peer=connection.peer,
                        **({"exceeded": connection.drop_reason} if connection.drop_reason else {}),
                    )
                    connection.mark_closed()  # its solves end as `disconnected`
                    return
                timeout = min(at - time.monotonic(), _CHECK_EVERY_S)
                await asyncio.wait(
                    {disconnected, dropped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            disconnected.cancel()
            dropped.cancel()

    def _next_deadline(self, connection: Connection) -> tuple[str, float]:
        deadlines = [("none", math.inf)]
        if self._login_timeout_s > 0 and not connection.authenticated:
            deadlines.append(("login_timeout", connection.opened_at + self._login_timeout_s))
        if self._idle_timeout_s > 0:
            deadlines.append(("idle_timeout", connection.last_activity + self._idle_timeout_s))
        frames, limits = connection.frames, self._limits
        # Bytes already waiting in the kernel: the delay is ours, not the peer's.
        if frames is not None and not _unread(connection.socket):
            if frames.frames == 0:
                deadlines.append(
                    ("first_message_timeout", connection.opened_at + limits.first_message_s)
                )
            # While its answers wait unread, the server may stop reading mid-message itself:
            # then the write stall is the deadline that tells.
            if frames.started_at is not None and frames.paused_at is None:
                deadlines.append(("message_timeout", frames.started_at + limits.message_s))
            if frames.paused_at is not None:
                deadlines.append(("write_stalled", frames.paused_at + limits.write_stall_s))
        return min(deadlines, key=lambda d: d[1])

    async def stop_accepting(self) -> None:
        """Close the listening sockets (once: calling again does nothing)."""
        accepting, self._accepting = self._accepting, []
        sockets, self._sockets = self._sockets, []
        paths, self._unix_paths = self._unix_paths, []
        for task in accepting:
            task.cancel()
        await asyncio.gather(*accepting, return_exceptions=True)
        for sock in sockets:
            sock.close()
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def close_connections(self, drain_timeout_s: float = 5.0) -> None:
        """Let calls in progress answer (within `drain_timeout_s`), then close every connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._calls.idle(), drain_timeout_s)
        await asyncio.sleep(_FLUSH_S)
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)


async def _stream(
    sock: socket.socket, tls: ssl.SSLContext | None
) -> tuple[Any, FrameWatch, frozenset[str]]:
    """A pycapnp stream over an accepted socket, with TLS when configured; the watch on its
    frames and writes; and the subject organizational units of the client certificate the
    handshake verified (if any).

    pycapnp's public constructors only dial out (or accept for themselves); an accepted socket
    goes through asyncio's connect_accepted_socket, with the protocol that pycapnp's own
    create_server uses, wrapped in a FrameWatch.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[Any] = loop.create_future()
    watch = FrameWatch(capnp.AsyncIoStream._connect(ready.set_result))
    transport, _ = await loop.connect_accepted_socket(
        lambda: watch,
        sock,
        ssl=tls,
        ssl_handshake_timeout=_TLS_HANDSHAKE_S if tls else None,
    )
    certificate = transport.get_extra_info("peercert") or {}
    units = frozenset(
        value
        for rdn in certificate.get("subject", ())
        for key, value in rdn
        if key == "organizationalUnitName"
    )
    return await ready, watch, units


def _unread(sock: socket.socket) -> int:
    try:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4), "little")
    except (OSError, ValueError):
        return 0


def _peer_uid(sock: socket.socket) -> int:
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", credentials)[1])
