"""`proofrace worker`: runs attempts for a dispatcher, with the same backends as its own.

It dials out to the dispatcher and registers (so scaling out is starting more workers), and
can also listen for a dispatcher that dials it (one listed in the dispatcher's `workers`).
On SIGTERM it drains: every attempt is stopped and reaped and its answer sent, then it exits.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import capnp
import structlog

from proofrace import __version__, schema
from proofrace.backends.pool import Place, Pool
from proofrace.client.login import LoginRefused
from proofrace.config import Settings, split_host_port
from proofrace.core.model import CancelCause, CancelReason
from proofrace.observe.telemetry import Telemetry
from proofrace.runtime import client_tls, runtime
from proofrace.wire.capabilities import ConnectionLimits, LoginGuard
from proofrace.wire.connection import Connection
from proofrace.wire.connection import dial as open_socket
from proofrace.wire.promises import first_of
from proofrace.wire.reconnect import reconnecting
from proofrace.wire.remote import WorkerInfo, write_worker_info
from proofrace.wire.throttle import LoginThrottle
from proofrace.wire.worker_server import WorkerGateServer, WorkerServer

_log = structlog.get_logger("proofrace.worker")
_SHUTDOWN = CancelReason(CancelCause.SHUTDOWN, "the worker is shutting down")


async def work(settings: Settings) -> None:
    try:
        await _work(settings)
    finally:
        _log.info("worker.stopped")


async def _work(settings: Settings) -> None:
    async with runtime(settings, {"version": __version__, "role": "worker"}) as rt:
        slots = settings.slots or os.cpu_count() or 1
        # The worker's own pool keeps it to its advertised slots whoever asks.
        pool = Pool()
        pool.add(Place("local", rt.local_backend(), slots))
        info = WorkerInfo(settings.name or socket.gethostname(), tuple(rt.registry.info()), slots)
        telemetry = Telemetry(rt.metrics)
        servers: weakref.WeakSet[WorkerServer] = weakref.WeakSet()

        def undelivered(event: str) -> None:
            rt.metrics.undelivered_events.labels(event).inc()

        def new_server(connection: Connection) -> WorkerServer:
            server = WorkerServer(
                pool, info, telemetry, connection, undelivered, settings.max_timeout_s
            )
            servers.add(server)
            connection.on_close(server.connection_lost)
            return server

        # A dispatcher dialling in meets the same Gate as a dispatcher's clients: with a worker
        # credential (or mutual TLS) configured, only `login` is reachable, and it answers
        # `worker`.
        credential = settings.worker_credential()
        limits = ConnectionLimits()
        throttle = LoginThrottle(settings.max_failed_logins_per_address, settings.login_backoff_s)
        gated = bool(credential or settings.tls_client_ca)

        def bootstrap(connection: Connection) -> WorkerServer | WorkerGateServer:
            if not gated:
                connection.authenticated = True
                return new_server(connection)
            logins = LoginGuard(connection, limits, throttle)
            return WorkerGateServer(credential, lambda: new_server(connection), logins)

        listener = rt.listener(
            bootstrap, login_timeout_s=settings.login_timeout_s if gated else 0.0
        )
        tasks: list[asyncio.Future[None]] = []
        try:
            rpc, metrics_port = await rt.open(unix=False, healthy=lambda: not rt.stop.is_set())
            if settings.dispatcher:
                registered = keep_registered(dial_of(settings), new_server, info, rt.stop)
                tasks.append(asyncio.ensure_future(registered))
            _log.info(
                "worker.ready",
                name=info.name,
                slots=slots,
                rpc=rpc,
                dispatcher=settings.dispatcher or None,
                metrics_port=metrics_port,
                provers=[i.name for i in info.provers if i.available],
                pid=os.getpid(),
            )
            await rt.stop.wait()
            _log.info("worker.stopping")
        finally:
            rt.stop.set()
            await asyncio.gather(*(s.drain(_SHUTDOWN) for s in servers), return_exceptions=True)
            await asyncio.gather(*tasks, return_exceptions=True)
            await listener.stop_accepting()


@dataclass(frozen=True)
class Dial:
    """How to reach the dispatcher."""

    address: str
    credential: str | None = None
    tls: ssl.SSLContext | None = None


def dial_of(settings: Settings) -> Dial:
    credential = settings.worker_credential().decode() or None
    return Dial(settings.dispatcher, credential, client_tls(settings, settings.dispatcher_ca))


async def keep_registered(
    dial: Dial,
    new_server: Callable[[Connection], WorkerServer],
    info: WorkerInfo,
    stop: asyncio.Event,
) -> None:
    """Stay registered with the dispatcher, reconnecting when it goes away."""

    async def session() -> None:
        await _registered(dial, new_server, info, stop)

    def unreachable(error: Exception) -> None:
        message = f"login refused: {error}" if isinstance(error, LoginRefused) else str(error)
        _log.warning("worker.dispatcher_unreachable", dispatcher=dial.address, error=message[:120])

    await reconnecting(
        session, stop, expected=(OSError, capnp.KjException, LoginRefused), on_failure=unreachable
    )


async def _registered(
    dial: Dial,
    new_server: Callable[[Connection], WorkerServer],
    info: WorkerInfo,
    stop: asyncio.Event,
) -> None:
    """One connection to the dispatcher, registered, until it is lost or the worker stops."""
    address = dial.address
    host, port = split_host_port(address)
    sock = await open_socket(host, port)
    try:
        if dial.tls is None:
            stream = await capnp.AsyncIoStream.create_connection(sock=sock)
        else:
            stream = await capnp.AsyncIoStream.create_connection(
                sock=sock, ssl=dial.tls, server_hostname=host
            )
    except BaseException:
        sock.close()  # a failed TLS handshake, say: the stream never took the socket over
        raise
    connection = Connection(sock, address)
    server = new_server(connection)
    client = capnp.TwoPartyClient(stream)
    try:
        hub = await hub_of(client.bootstrap(), dial.credential)
        request = hub.registerWorker_request()
        request.worker = server
        write_worker_info(request.init("info"), info)
        response = await request.send()
        if response._has("refused"):
            raise LoginRefused(f"registration refused: {response.refused.message}")
        registration = response.registration
        _log.info("worker.registered", dispatcher=address, name=info.name)
        await first_of(client.on_disconnect(), stop)
        if stop.is_set():
            await server.drain(_SHUTDOWN)  # the answers go out while the connection lives
        else:
            _log.warning("worker.dispatcher_lost", dispatcher=address)
        del registration
    finally:
        connection.mark_closed()  # stops whatever this dispatcher still had running here
        client.close()


async def hub_of(bootstrap: Any, credential: str | None) -> Any:
    """Where to register: the WorkerHub the worker credential opens. Without a credential,
    the Dispatcher itself, which accepts only when its operator opened registration to all."""
    result = (await bootstrap.cast_as(schema.load().Gate).login(credential or "")).result
    which = result.which()
    if which == "workerHub":
        return result.workerHub
    if which == "dispatcher":
        return result.dispatcher
    if which == "refused":
        raise LoginRefused(str(result.refused.message))
    raise LoginRefused(f"the dispatcher answered the login with {which}")
