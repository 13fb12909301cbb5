"""What every RPC method of ours shares: the call counted on its connection (so a stopping
server lets pending answers out first), and errors that go out as one fixed line instead of
a traceback.

pycapnp answers a server method that raised with `traceback.format_exception(...)` of the
exception: every frame, with the server's source paths. It also reads the parameters before the
method runs and writes a returned value after it, outside any `try` of the method's own. So a
guarded method is served through the `<name>_context` form, which pycapnp prefers: reading,
running and writing all happen inside the guard, and what leaves it is a `_PeerError`, which
pycapnp formats as its message alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import structlog

if TYPE_CHECKING:
    from proofrace.wire.connection import Connection

_log = structlog.get_logger("proofrace.wire")

Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])


class CallTracker:
    """Counts calls in progress, so a stopping server can let pending answers go out first.
    One per listener (and one per connection a worker dials out). `on_fault` counts the calls
    that failed with an unexpected error."""

    def __init__(self, on_fault: Callable[[], None] = lambda: None) -> None:
        self.on_fault = on_fault
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
    """Counts the call on the server's connection, and keeps tracebacks home: an unexpected
    error is logged with its traceback and a reference, and the peer gets one fixed line with
    that reference."""

    @functools.wraps(method)
    async def guarded(server: Served, *args: Any, **kwargs: Any) -> Any:
        connection = server.connection
        if connection is not None:
            connection.call_started()  # a sign of life, and a bound on calls in flight
            connection.calls.enter()
        try:
            return _answered(kwargs, await method(server, *args, **kwargs))
        except Exception as error:
            if connection is not None:
                connection.calls.on_fault()
            raise _internal_error(method.__name__, error) from None
        finally:
            if connection is not None:
                connection.calls.leave()
                connection.call_finished()

    return cast(Method, _Guarded(guarded))


def rpc_method_acting_at_dispatch(
    act: Callable[[Any, Any], None],
) -> Callable[[Method], Method]:
    """`rpc_method`, with `act(server, params)` run as pycapnp dispatches the call: in the
    loop turn that read it, a turn before the method's own task first runs. For a call whose
    effect must not wait (a cancel: its signals leave then). `act` must be idempotent, since
    the method itself runs after it; an error it raises is left for the method, which meets
    it again and answers it as any other."""

    def decorate(method: Method) -> Method:
        guarded = rpc_method(method)
        cast(_Guarded, guarded).act = act
        return guarded

    return decorate


class _PeerError(Exception):
    """What a peer is told. pycapnp sends `format_exception(type(e), e, e.__traceback__)`: with
    no traceback to show (this reads as none) and a type named like a sentence from no module,
    that is the line `<kind>: <message>`."""

    @property
    def __traceback__(self) -> None:
        return None

    @__traceback__.setter
    def __traceback__(self, _tb: object) -> None:
        pass


class InternalError(_PeerError):
    __module__, __qualname__ = "builtins", "internal server error"


class UnreadableCall(_PeerError):
    __module__, __qualname__ = "builtins", "invalid call"


class Unimplemented(_PeerError):
    __module__, __qualname__ = "builtins", "not implemented"


def _internal_error(method: str, error: Exception) -> InternalError:
    """Logs the error with its traceback under a fresh reference; the peer gets the reference."""
    ref = secrets.token_hex(4)
    _log.error("rpc.internal_error", method=method, ref=ref, exc_info=error)
    return InternalError(f"ref {ref}; see the server log")


def _answered(kwargs: dict[str, Any], returned: object) -> object:
    """Writes what a method returned into its results (a value, or a tuple in field order)."""
    if returned is None:
        return None
    results = kwargs["_context"].results
    values = returned if isinstance(returned, tuple) else (returned,)
    fields = sorted(results.schema.node.struct.fields, key=lambda f: f.codeOrder)
    for field, value in zip(fields[: len(values)], values, strict=True):
        setattr(results, field.name, value)
    return returned


class _Guarded:
    """A guarded method in its class: `name` for Python callers, and `name_context`, which
    pycapnp calls with the call's context and nothing read yet."""

    def __init__(self, guarded: Callable[..., Awaitable[Any]]) -> None:
        self._guarded = guarded
        self.act: Callable[[Any, Any], None] | None = None  # at dispatch (see above)

    def __set_name__(self, owner: type, name: str) -> None:
        guarded, act = self._guarded, self.act

        async def served(server: object, context: Any) -> None:
            try:
                params = context.params
                arguments = {field: getattr(params, field) for field in params.schema.fieldnames}
            except Exception as error:  # a peer's malformed parameters (bad UTF-8 in a Text)
                _log.warning("rpc.unreadable_call", method=name, error=str(error)[:200])
                raise UnreadableCall("its parameters could not be read") from None
            await guarded(server, _context=context, **arguments)

        def dispatched(server: object, context: Any) -> Coroutine[Any, Any, None]:
            if act is not None:
                with contextlib.suppress(Exception):  # the method meets it again, and answers
                    act(server, context.params)
            return served(server, context)

        setattr(owner, f"{name}_context", dispatched if act is not None else served)
        _refuse_missing(owner)

    def __get__(self, server: object, owner: type | None = None) -> Any:
        return self._guarded if server is None else functools.partial(self._guarded, server)


def _refuse_missing(owner: Any) -> None:
    """Methods of the class's interface that it does not define: pycapnp would answer them
    with the traceback of its own AttributeError."""
    for name in owner.schema.method_names_inherited:
        if hasattr(owner, name) or hasattr(owner, f"{name}_context"):
            continue

        async def refused(server: object, context: Any, method: str = name) -> None:
            raise Unimplemented(method)

        setattr(owner, f"{name}_context", refused)
