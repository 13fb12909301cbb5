"""What every RPC method of ours shares: call counting for a clean shutdown, and errors that
go out as one plain line instead of a traceback."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import capnp
import structlog

_log = structlog.get_logger("proofrace.wire")

P = ParamSpec("P")
R = TypeVar("R")


class CallTracker:
    """Counts calls in progress, so a stopping server can let pending answers go out first."""

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


calls = CallTracker()


def rpc_method(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Counts the call, and keeps tracebacks home: pycapnp would send a raised exception's
    full traceback to the peer, so an unexpected error goes out as one plain line."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        connection = getattr(args[0], "_connection", None)
        if connection is not None:
            connection.touch()
        calls.enter()
        try:
            return await method(*args, **kwargs)
        except Exception as error:
            _log.error("rpc.internal_error", method=method.__name__, exc_info=error)
            raise capnp.KjException("internal server error; see the server log") from None
        finally:
            calls.leave()

    return guarded
