"""Accepting connections (TCP and Unix) and serving one bootstrap capability per connection.

The accept loop is ours rather than pycapnp's create_server, so that each connection keeps
its socket object: the token finalizer peeks it to tell a dropped token from a lost peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import capnp
import structlog

from proofrace.wire.calls import CallTracker
from proofrace.wire.connection import Connection

_log = structlog.get_logger("proofrace.wire")
_BACKLOG = 128
# After the last call returns, its answer still has to be written by the RPC system (a few
# turns of the event loop); closing before that would cut it off.
_FLUSH_S = 0.05
_TLS_HANDSHAKE_S = 10.0
# After a failed accept (out of descriptors, say), a pause before the next.
_ACCEPT_RETRY_S = 0.1


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "tcp" or "unix"
    address: str  # "host:port" or the socket's path

    def __str__(self) -> str:
        return self.address if self.kind == "tcp" else f"unix:{self.address}"


def _private_directory(directory: Path) -> None:
    """Create the socket's directory 0700, or check that an existing one is ours alone."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid not in (os.getuid(), 0):
        raise OSError(f"{directory} belongs to another user")
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise OSError(f"{directory} is writable by others")


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
    ) -> None:
        """`login_timeout_s` > 0: a connection not authenticated by then is closed."""
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
            tls = self._tls if endpoint.kind == "tcp" else None
            task = asyncio.create_task(self._serve(sock, peer_name, tls))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(self, sock: socket.socket, peer: str, tls: ssl.SSLContext | None) -> None:
        connection = Connection(sock, peer, self._calls)
        log = _log.bind(connection=connection.id, peer=peer)
        log.info("connection.opened")
        self._on_connections(+1)
        server = None
        stream = None
        try:
            stream = await _stream(sock, tls)
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
                    _log.warning(
                        f"connection.{why}", connection=connection.id, peer=connection.peer
                    )
                    connection.mark_closed()  # its solves end as `disconnected`
                    return
                timeout = None if at == math.inf else at - time.monotonic()
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


async def _stream(sock: socket.socket, tls: ssl.SSLContext | None) -> Any:
    """A pycapnp stream over an accepted socket, with TLS when configured.

    pycapnp's public constructors only dial out (or accept for themselves); an accepted socket
    with TLS on the server side goes through asyncio's connect_accepted_socket, with the
    protocol that pycapnp's own create_server uses.
    """
    if tls is None:
        if sock.family == socket.AF_UNIX:
            return await capnp.AsyncIoStream.create_unix_connection(sock=sock)
        return await capnp.AsyncIoStream.create_connection(sock=sock)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[Any] = loop.create_future()
    await loop.connect_accepted_socket(
        lambda: capnp.AsyncIoStream._connect(ready.set_result),
        sock,
        ssl=tls,
        ssl_handshake_timeout=_TLS_HANDSHAKE_S,
    )
    return await ready
