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
from pathlib import Path

import capnp
import structlog

from proofrace import __version__
from proofrace.backends.pool import Place, Pool
from proofrace.client.login import LoginRefused, dispatcher_of
from proofrace.config import Settings, split_host_port
from proofrace.core.model import CancelCause, CancelReason
from proofrace.observe.telemetry import Telemetry
from proofrace.runtime import runtime
from proofrace.wire.connection import Connection
from proofrace.wire.connection import dial as open_socket
from proofrace.wire.promises import first_of
from proofrace.wire.reconnect import reconnecting
from proofrace.wire.remote import WorkerInfo, write_worker_info
from proofrace.wire.worker_server import WorkerServer

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
            server = WorkerServer(pool, info, telemetry, connection, undelivered)
            servers.add(server)
            connection.on_close(server.connection_lost)
            return server

        listener = rt.listener(new_server)
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
    credential = None
    if settings.credential_file:
        credential = Path(settings.credential_file).read_text().strip()
    tls = None
    if settings.dispatcher_ca:
        tls = ssl.create_default_context(cafile=settings.dispatcher_ca)
    return Dial(settings.dispatcher, credential, tls)


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
        dispatcher = await dispatcher_of(client.bootstrap(), dial.credential)
        request = dispatcher.registerWorker_request()
        request.worker = server
        write_worker_info(request.init("info"), info)
        registration = (await request.send()).registration
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
