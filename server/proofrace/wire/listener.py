"""Accepting connections (TCP and Unix) and serving one bootstrap capability per connection.

The accept loop is ours rather than pycapnp's create_server, so that each connection keeps
its socket object: the token finalizer peeks it to tell a dropped token from a lost peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import capnp
import structlog

from proofrace.wire.calls import calls
from proofrace.wire.connection import Connection

_log = structlog.get_logger("proofrace.wire")
_BACKLOG = 128
# After the last call returns, its answer still has to be written by the RPC system (a few
# turns of the event loop); closing before that would cut it off.
_FLUSH_S = 0.05


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "tcp" or "unix"
    address: str  # "host:port" or the socket's path

    def __str__(self) -> str:
        return self.address if self.kind == "tcp" else f"unix:{self.address}"


class RpcListener:
    """Serves `bootstrap(connection)` as the bootstrap capability of each connection."""

    def __init__(
        self,
        bootstrap: Callable[[Connection], Any],
        *,
        traversal_limit_words: int,
        on_connections: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self._bootstrap = bootstrap
        self._traversal_limit = traversal_limit_words
        self._on_connections = on_connections
        self._sockets: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._serving: set[asyncio.Task[None]] = set()
        self._streams: set[Any] = set()
        self._unix_paths: list[Path] = []

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
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and stat.S_ISSOCK(target.stat().st_mode):
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
            except OSError as error:  # e.g. EMFILE: log, and let the loop breathe
                _log.error("connection.accept_failed", endpoint=str(endpoint), error=str(error))
                await asyncio.sleep(0.1)
                continue
            if endpoint.kind == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                # Small answers go out at once: with Nagle's algorithm an answer that follows
                # another waits for the peer's delayed ACK (about 40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer_name = f"{peer[0]}:{peer[1]}" if endpoint.kind == "tcp" else "unix"
            task = asyncio.create_task(self._serve(sock, peer_name, endpoint.kind == "unix"))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(self, sock: socket.socket, peer: str, unix: bool) -> None:
        connection = Connection(sock, peer)
        log = _log.bind(connection=connection.id, peer=peer)
        log.info("connection.opened")
        self._on_connections(+1)
        server = None
        stream = None
        try:
            if unix:
                stream = await capnp.AsyncIoStream.create_unix_connection(sock=sock)
            else:
                stream = await capnp.AsyncIoStream.create_connection(sock=sock)
            self._streams.add(stream)
            server = capnp.TwoPartyServer(
                stream,
                bootstrap=self._bootstrap(connection),
                traversal_limit_in_words=self._traversal_limit,
            )
            await server.on_disconnect()
            log.info("connection.closed")
        except asyncio.CancelledError:
            log.info("connection.closed", by="server")
            raise
        except Exception as error:  # a malformed stream ends this connection only
            log.warning("connection.failed", error=str(error).splitlines()[0][:200])
        finally:
            connection.closed()
            self._on_connections(-1)
            if stream is not None:
                self._streams.discard(stream)
                stream.close()  # closes the transport after its buffer is flushed
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()

    async def stop_accepting(self) -> None:
        for task in self._accepting:
            task.cancel()
        await asyncio.gather(*self._accepting, return_exceptions=True)
        for sock in self._sockets:
            sock.close()
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def close_connections(self, drain_timeout_s: float = 5.0) -> None:
        """Let calls in progress answer (within `drain_timeout_s`), then close every connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(calls.idle(), drain_timeout_s)
        await asyncio.sleep(_FLUSH_S)
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
