"""The client's end of one connection: its socket, pycapnp's stream over it, and the RPC system.

Closing a pycapnp `TwoPartyClient` drops the RPC state but leaves the socket open, so the server
would only see the peer leave when the process exits. So the socket is ours: it is dialled here
and handed to pycapnp, and closing shuts it down before anything else. The server reads
end-of-file at once, whatever pycapnp does afterwards. The stream's transport then closes the
socket object itself, so no one closes its descriptor twice or touches a reused one.

A `Link` is held by its `Client` and by every `Job` of it: it is dropped when they all are.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import warnings
from collections.abc import Iterator
from typing import Any

import capnp

from proofrace.client.address import Address, connect_unix
from proofrace.wire.frames import open_stream


class ClientClosed(RuntimeError):
    """A call on a client that was closed, or on a job of that client."""

    def __init__(self) -> None:
        super().__init__("this proofrace client is closed")


class Link:
    def __init__(
        self, address: Address, sock: socket.socket, stream: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.address = address
        self._sock = sock
        self._stream = stream
        self._loop = loop
        self.rpc = capnp.TwoPartyClient(stream)
        self.closed = False

    @classmethod
    async def open(cls, address: Address, tls: ssl.SSLContext | None) -> Link:
        loop = asyncio.get_running_loop()
        sock = await (_dial_unix(address.path) if address.path else _dial_tcp(address))
        try:
            # The messages of one loop turn leave in one send (see proofrace.wire.frames):
            # a solve and its pipelined result() call, say.
            if address.path:
                stream = await open_stream(
                    lambda made: loop.create_unix_connection(made, sock=sock)
                )
            elif tls is not None:
                stream = await open_stream(
                    lambda made: loop.create_connection(
                        made, sock=sock, ssl=tls, server_hostname=address.host
                    )
                )
            else:
                stream = await open_stream(lambda made: loop.create_connection(made, sock=sock))
        except BaseException:
            sock.close()
            raise
        return cls(address, sock, stream, loop)

    def check(self) -> None:
        if self.closed:
            raise ClientClosed()

    @contextlib.contextmanager
    def translating(self) -> Iterator[None]:
        """A call cut short by `close()` raises `ClientClosed`, not pycapnp's disconnection."""
        try:
            yield
        except capnp.KjException:
            if self.closed:
                raise ClientClosed() from None
            raise

    def close(self) -> None:
        """Shut the connection down now; idempotent. The transport closes the descriptor on the
        loop's next turn."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        # As pycapnp's own loop teardown does: the stream first (its transport is closed and
        # forgotten, so pycapnp writes and reads nothing more), then the RPC system.
        self._stream.close()
        self.rpc.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        """Dropped open (its client and every job of it gone): warn, as asyncio does, and close.
        A finalizer may run at any point of the loop, even inside pycapnp, so the close is left
        to the loop's next turn; with no loop to run it, the socket is shut down here."""
        if getattr(self, "closed", True):
            return
        try:
            self._loop.call_soon_threadsafe(self.close)
        except RuntimeError:  # the loop is closed: its transport will never close the socket
            self.closed = True
            self._sock.close()
        else:
            if not self._loop.is_running():
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
        # Last: with warnings turned into errors, this raises.
        _warn(f"unclosed {self!r}", ResourceWarning, source=self)

    def __repr__(self) -> str:
        return f"<proofrace client connection to {self.address}>"


async def _dial_tcp(address: Address) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"{address} resolves to no address")
    for family, kind, proto, _, target in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, target)
        except OSError as failed:
            sock.close()
            error = failed
            continue
        except BaseException:
            sock.close()
            raise
        return sock  # asyncio's transport sets TCP_NODELAY
    raise error


async def _dial_unix(path: str) -> socket.socket:
    # The server's uid is checked (SO_PEERCRED) before anything is sent.
    return await connect_unix(path)
