"""The Gate, Dispatcher and CancelToken capabilities.

A token's release is how a dropped handle reaches the race: pycapnp has no release hook, but
when the last remote reference goes, the C++ side drops the Python object and its finalizer
runs. So nothing may hold a token strongly except pycapnp itself: the race never points back
at it, and the finalizer holds only the race and the connection.
"""

from __future__ import annotations

import hmac
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import capnp
import structlog

from proofrace import schema
from proofrace.core.model import (
    CancelCause,
    CancelReason,
    ErrorKind,
    SolveError,
    SolveRequest,
)
from proofrace.race.race import Solve
from proofrace.race.service import RaceService, overloaded
from proofrace.wire import convert
from proofrace.wire.calls import rpc_method
from proofrace.wire.connection import Connection
from proofrace.wire.remote import RegistrationServer, WorkerDirectory, read_worker_info

_schema = schema.load()
_log = structlog.get_logger("proofrace.wire")


class CancelTokenServer(_schema.CancelToken.Server):  # type: ignore[misc,name-defined]
    def __init__(self, solve: Solve, connection: Connection) -> None:
        self._solve = solve
        self.connection = connection  # calls on the token count as signs of life
        weakref.finalize(self, _token_released, solve, connection)

    @rpc_method
    async def cancel(self, reason: str, _context: Any, **kwargs: Any) -> None:
        self._solve.cancel(CancelReason(CancelCause.CLIENT, reason or "cancelled by the client"))
        convert.write_status(_context.results.init("status"), self._solve.status())

    @rpc_method
    async def result(self, _context: Any, **kwargs: Any) -> None:
        outcome = await self._solve.outcome()
        convert.write_outcome(_context.results.init("outcome"), outcome)

    @rpc_method
    async def status(self, _context: Any, **kwargs: Any) -> None:
        convert.write_status(_context.results.init("status"), self._solve.status())


def _token_released(solve: Solve, connection: Connection) -> None:
    if connection.is_closed():
        solve.cancel(CancelReason(CancelCause.DISCONNECTED, "the client's connection closed"))
    else:
        solve.cancel(
            CancelReason(CancelCause.TOKEN_DROPPED, "every reference to the token was released")
        )


@dataclass(frozen=True)
class ConnectionLimits:
    max_solves: int = 32  # in flight on one connection
    idle_timeout_s: float = 0.0  # told to clients through ping()
    max_failed_logins: int = 3


class DispatcherServer(_schema.Dispatcher.Server):  # type: ignore[misc,name-defined]
    def __init__(
        self,
        service: RaceService,
        connection: Connection,
        workers: WorkerDirectory,
        limits: ConnectionLimits,
    ) -> None:
        self._service = service
        self.connection = connection
        self._workers = workers
        self._limits = limits

    @rpc_method
    async def login(self, credential: str, _context: Any, **kwargs: Any) -> None:
        # Already past any gate: logging in again changes nothing.
        _context.results.init("result").dispatcher = self

    @rpc_method
    async def solve(self, request: Any, _context: Any, **kwargs: Any) -> CancelTokenServer:
        try:
            solve_request = convert.read_request(request)
        except (ValueError, capnp.KjException) as error:
            solve = self._service.refuse(
                SolveRequest(b""),
                SolveError(ErrorKind.INVALID_REQUEST, f"the request could not be read: {error}"),
            )
        else:
            running = self.connection.running_solves()
            if running >= self._limits.max_solves:
                solve = self._service.refuse(
                    solve_request,
                    overloaded(f"{running} solves in flight on this connection, its limit"),
                )
            else:
                solve = await self._service.solve(solve_request)
        self.connection.track(solve)
        return CancelTokenServer(solve, self.connection)

    @rpc_method
    async def provers(self, _context: Any, **kwargs: Any) -> None:
        catalog = self._service.catalog()
        convert.write_provers(_context.results.init("provers", len(catalog)), catalog)

    @rpc_method
    async def registerWorker(
        self, worker: Any, info: Any, _context: Any, **kwargs: Any
    ) -> RegistrationServer:
        return self._workers.register(worker, read_worker_info(info))

    @rpc_method
    async def ping(self, _context: Any, **kwargs: Any) -> int:
        return round(self._limits.idle_timeout_s * 1000)


class GateServer(_schema.Gate.Server):  # type: ignore[misc,name-defined]
    """The bootstrap when a credential is required: only `login` is reachable through it."""

    def __init__(
        self,
        secret: bytes,
        dispatcher: Callable[[], DispatcherServer],
        connection: Connection,
        limits: ConnectionLimits,
    ) -> None:
        self._secret = secret
        self._dispatcher = dispatcher
        self.connection = connection
        self._limits = limits
        self._failures = 0

    @rpc_method
    async def login(self, credential: str, _context: Any, **kwargs: Any) -> None:
        result = _context.results.init("result")
        if hmac.compare_digest(credential.encode(), self._secret):
            self.connection.authenticated = True
            _log.info("connection.login", connection=self.connection.id)
            result.dispatcher = self._dispatcher()
            return
        self._failures += 1
        _log.warning(
            "connection.login_refused", connection=self.connection.id, peer=self.connection.peer
        )
        convert.write_error(
            result.init("refused"),
            SolveError(ErrorKind.UNAUTHENTICATED, "the credential was refused"),
        )
        if self._failures >= self._limits.max_failed_logins:
            self.connection.drop_requested.set()
