"""What every RPC method of ours shares: the call counted on its connection (so a stopping
server lets pending answers out first), and errors that go out as one plain line instead of
a traceback."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import capnp
import structlog

if TYPE_CHECKING:
    from proofrace.wire.connection import Connection

_log = structlog.get_logger("proofrace.wire")

Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])


class CallTracker:
    """Counts calls in progress, so a stopping server can let pending answers go out first.
    One per listener (and one per connection a worker dials out)."""

    def __init__(self) -> None:
        self.in_progress = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_progress += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_progress -= 1
        if self.in_progress == 0:
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


class Served(Protocol):
    """A capability served over one connection (None: the caller's connection is not ours to
    track, as for the events a worker sends back on a call the dispatcher made)."""

    @property
    def connection(self) -> Connection | None: ...


def rpc_method(method: Method) -> Method:
    """Counts the call on the server's connection, and keeps tracebacks home: pycapnp would
    send a raised exception's full traceback to the peer, so an unexpected error goes out as
    one plain line."""

    @functools.wraps(method)
    async def guarded(server: Served, *args: Any, **kwargs: Any) -> Any:
        connection = server.connection
        if connection is not None:
            connection.touch()
            connection.calls.enter()
        try:
            return await method(server, *args, **kwargs)
        except Exception as error:
            _log.error("rpc.internal_error", method=method.__name__, exc_info=error)
            raise capnp.KjException("internal server error; see the server log") from None
        finally:
            if connection is not None:
                connection.calls.leave()

    return cast(Method, guarded)
