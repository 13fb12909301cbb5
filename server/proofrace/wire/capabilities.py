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
from dataclasses import dataclass, field, replace
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
from proofrace.wire.calls import rpc_method, rpc_method_acting_at_dispatch
from proofrace.wire.connection import Connection
from proofrace.wire.limits import IdentityShare, PeerLimits, check_request
from proofrace.wire.remote import (
    RegistrationServer,
    WorkerDirectory,
    bounded_text,
    read_worker_info,
)
from proofrace.wire.throttle import LoginThrottle

_schema = schema.load()
_log = structlog.get_logger("proofrace.wire")


class CancelTokenServer(_schema.CancelToken.Server):  # type: ignore[misc,name-defined]
    def __init__(self, solve: Solve, connection: Connection) -> None:
        self._solve = solve
        self.connection = connection  # calls on the token count as signs of life
        self._waiters = 0
        weakref.finalize(self, _token_released, solve, connection)

    def _cancel(self, reason: str) -> None:
        """Idempotent: a cancel already called is not called again."""
        reason = bounded_text(reason, self.connection.limits.max_reason_chars)
        self._solve.cancel(CancelReason(CancelCause.CLIENT, reason or "cancelled by the client"))

    # Called as the call is dispatched, a loop turn before the method's task: the provers'
    # signals leave about 0.15 ms sooner, and their reap starts 0.3 ms sooner.
    @rpc_method_acting_at_dispatch(lambda token, params: token._cancel(str(params.reason)))
    async def cancel(self, reason: str, _context: Any, **kwargs: Any) -> None:
        self._cancel(reason)
        convert.write_status(_context.results.init("status"), self._solve.status())

    @rpc_method
    async def result(self, _context: Any, **kwargs: Any) -> None:
        if self._waiters >= self.connection.limits.max_result_waiters:
            self.connection.exceeded("result() calls waiting on one token")
        self._waiters += 1
        try:
            outcome = await self._solve.outcome()
        finally:
            self._waiters -= 1
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
    peer: PeerLimits = field(default_factory=PeerLimits)
    share: IdentityShare | None = None  # solves and attempts per caller, over connections


@dataclass(frozen=True)
class Roles:
    """Who may do what. Solving and serving as a worker are different rights: a worker proves
    its role with the worker secret, or with a client certificate whose subject OU is
    `worker_ou`; a client's credential never grants registration."""

    client_secret: bytes = b""  # b"": solving needs no login
    worker_secret: bytes = b""  # b"": no worker logs in with a secret
    worker_ou: str = ""  # "": no certificate grants the worker role
    open_registration: bool = False  # Dispatcher.registerWorker open to all (no roles)

    def worker_certificate(self, connection: Connection) -> bool:
        return bool(self.worker_ou) and self.worker_ou in connection.certificate_units

    def is_worker_secret(self, credential: bytes) -> bool:
        return bool(self.worker_secret) and hmac.compare_digest(credential, self.worker_secret)

    def is_client_secret(self, credential: bytes) -> bool:
        return bool(self.client_secret) and hmac.compare_digest(credential, self.client_secret)


_FORBIDDEN = SolveError(
    ErrorKind.FORBIDDEN,
    "registering a worker needs the worker role: log in with a worker credential",
)


def _write_registration(results: Any, registration: RegistrationServer | SolveError) -> None:
    if isinstance(registration, SolveError):
        convert.write_error(results.init("refused"), registration)
    else:
        results.registration = registration


class WorkerHubServer(_schema.WorkerHub.Server):  # type: ignore[misc,name-defined]
    """What a worker's credential opens: registration, and nothing else."""

    def __init__(self, workers: WorkerDirectory, connection: Connection) -> None:
        self.connection = connection
        self._workers = workers

    @rpc_method
    async def registerWorker(self, worker: Any, info: Any, _context: Any, **kwargs: Any) -> None:
        connection = self.connection
        # Released while its connection lives: the worker withdrew on purpose (a drain).
        registration = self._workers.register(
            worker, read_worker_info(info), planned=lambda: not connection.is_closed()
        )
        _write_registration(_context.results, registration)


class DispatcherServer(_schema.Dispatcher.Server):  # type: ignore[misc,name-defined]
    def __init__(
        self,
        service: RaceService,
        connection: Connection,
        workers: WorkerDirectory,
        limits: ConnectionLimits,
        roles: Roles | None = None,
        logins: LoginGuard | None = None,
    ) -> None:
        self._service = service
        self.connection = connection
        self._workers = workers
        self._limits = limits
        self._roles = roles or Roles()
        self._logins = logins or LoginGuard(connection, limits)

    @rpc_method
    async def login(self, credential: str, _context: Any, **kwargs: Any) -> None:
        # Already past any gate: logging in again changes nothing, unless the credential is a
        # worker's, which opens the worker-facing side instead.
        result = _context.results.init("result")
        given = credential.encode()
        if self._roles.is_worker_secret(given) or self._roles.worker_certificate(self.connection):
            result.workerHub = self._logins.granted(
                "worker", WorkerHubServer(self._workers, self.connection)
            )
            return
        # Any other credential changes nothing either: a client may log in to a server that
        # asks for none. (Guessing the worker secret here meets its length, 16 bytes or more.)
        result.dispatcher = self

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
            solve = await self._start(solve_request)
        self.connection.track(solve)
        return CancelTokenServer(solve, self.connection)

    async def _start(self, request: SolveRequest) -> Solve:
        """The race, or a refusal: text beyond its caps, or beyond this connection's or this
        caller's share."""
        invalid = check_request(request, self._limits.peer)
        if invalid is not None:
            shown = bounded_text(request.goal_id, 64)
            return self._service.refuse(replace(request, goal_id=shown, provers=()), invalid)
        running = self.connection.running_solves()
        if running >= self._limits.max_solves:
            return self._service.refuse(
                request, overloaded(f"{running} solves in flight on this connection, its limit")
            )
        share, identity = self._limits.share, self.connection.identity
        beyond_share = share.refusal(identity) if share is not None else None
        if beyond_share is not None:
            return self._service.refuse(request, beyond_share)
        solve = await self._service.solve(request)
        if share is not None:
            share.track(identity, solve)
        return solve

    @rpc_method
    async def provers(self, _context: Any, **kwargs: Any) -> None:
        catalog = self._service.catalog()
        convert.write_provers(_context.results.init("provers", len(catalog)), catalog)

    @rpc_method
    async def registerWorker(self, worker: Any, info: Any, _context: Any, **kwargs: Any) -> None:
        if not self._roles.open_registration:
            _log.warning("worker.refused", connection=self.connection.id, why="no worker role")
            convert.write_error(_context.results.init("refused"), _FORBIDDEN)
            return
        connection = self.connection
        # Released while its connection lives: the worker withdrew on purpose (a drain).
        registration = self._workers.register(
            worker, read_worker_info(info), planned=lambda: not connection.is_closed()
        )
        _write_registration(_context.results, registration)

    @rpc_method
    async def ping(self, _context: Any, **kwargs: Any) -> int:
        return round(self._limits.idle_timeout_s * 1000)


class LoginGuard:
    """Failed logins on one connection, and through `throttle` on its peer's address: too many
    drop the connection, and an address that keeps failing is refused for a growing while."""

    def __init__(
        self,
        connection: Connection,
        limits: ConnectionLimits,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.connection = connection
        self._limits = limits
        self._throttle = throttle
        self._failures = 0

    def blocked(self) -> bool:
        return self._throttle is not None and self._throttle.blocked(self.connection.peer_host)

    def granted(self, role: str, capability: Any) -> Any:
        self.connection.authenticated = True
        _log.info("connection.login", connection=self.connection.id, role=role)
        return capability

    def failed(self) -> None:
        self._failures += 1
        if self._throttle is not None:
            self._throttle.failed(self.connection.peer_host)
        _log.warning(
            "connection.login_refused", connection=self.connection.id, peer=self.connection.peer
        )
        if self._failures >= self._limits.max_failed_logins or self.blocked():
            self.connection.drop_requested.set()


class GateServer(_schema.Gate.Server):  # type: ignore[misc,name-defined]
    """The bootstrap when a credential is required: only `login` is reachable through it.
    It answers by role: a `dispatcher` to a client's credential, a `workerHub` to a worker's."""

    def __init__(
        self,
        roles: Roles,
        dispatcher: Callable[[], DispatcherServer],
        hub: Callable[[], WorkerHubServer],
        connection: Connection,
        logins: LoginGuard,
    ) -> None:
        self._roles = roles
        self._dispatcher = dispatcher
        self._hub = hub
        self.connection = connection
        self._logins = logins

    @rpc_method
    async def login(self, credential: str, _context: Any, **kwargs: Any) -> None:
        result = _context.results.init("result")
        given = credential.encode()
        if not self._logins.blocked():
            if self._roles.worker_certificate(self.connection) or self._roles.is_worker_secret(
                given
            ):
                result.workerHub = self._logins.granted("worker", self._hub())
                return
            if self._roles.is_client_secret(given):
                result.dispatcher = self._logins.granted("client", self._dispatcher())
                return
        self._logins.failed()
        convert.write_error(
            result.init("refused"),
            SolveError(ErrorKind.UNAUTHENTICATED, "the credential was refused"),
        )
