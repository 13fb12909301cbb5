"""The Dispatcher and CancelToken capabilities.

A token's release is how a dropped handle reaches the race: pycapnp has no release hook, but
when the last remote reference goes, the C++ side drops the Python object and its finalizer
runs. So nothing may hold a token strongly except pycapnp itself: the race never points back
at it, and the finalizer holds only the race and the connection.
"""

from __future__ import annotations

import weakref
from typing import Any

import capnp

from proofrace import schema
from proofrace.core.model import (
    CancelCause,
    CancelReason,
    ErrorKind,
    SolveError,
    SolveRequest,
)
from proofrace.race.race import RefusedSolve, Solve
from proofrace.race.service import RaceService
from proofrace.wire import convert
from proofrace.wire.calls import rpc_method
from proofrace.wire.connection import Connection
from proofrace.wire.remote import RegistrationServer, WorkerDirectory, read_worker_info

_schema = schema.load()


class CancelTokenServer(_schema.CancelToken.Server):  # type: ignore[misc,name-defined]
    def __init__(self, solve: Solve, connection: Connection) -> None:
        self._solve = solve
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


class DispatcherServer(_schema.Dispatcher.Server):  # type: ignore[misc,name-defined]
    def __init__(
        self, service: RaceService, connection: Connection, workers: WorkerDirectory
    ) -> None:
        self._service = service
        self._connection = connection
        self._workers = workers

    @rpc_method
    async def solve(self, request: Any, _context: Any, **kwargs: Any) -> CancelTokenServer:
        try:
            solve_request = convert.read_request(request)
        except (ValueError, capnp.KjException) as error:
            solve = self._refuse(f"the request could not be read: {error}")
        else:
            solve = self._service.start(solve_request)
        self._connection.track(solve)
        return CancelTokenServer(solve, self._connection)

    @rpc_method
    async def provers(self, _context: Any, **kwargs: Any) -> None:
        catalog = self._service.catalog()
        convert.write_provers(_context.results.init("provers", len(catalog)), catalog)

    @rpc_method
    async def registerWorker(
        self, worker: Any, info: Any, _context: Any, **kwargs: Any
    ) -> RegistrationServer:
        return self._workers.register(worker, read_worker_info(info))

    def _refuse(self, message: str) -> Solve:
        return RefusedSolve(
            "refused", SolveRequest(b""), SolveError(ErrorKind.INVALID_REQUEST, message)
        )
