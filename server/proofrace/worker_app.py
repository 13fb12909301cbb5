"""`proofrace worker`: runs attempts for a dispatcher, with the same backends as its own.

It dials out to the dispatcher and registers (so scaling out is starting more workers), and
can also listen for a dispatcher that dials it (one listed in the dispatcher's `workers`).
On SIGTERM it drains: every attempt is stopped and reaped and its answer sent, then it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import capnp
import structlog

from proofrace import __version__, schema
from proofrace.app import (
    local_backend,
    scratch_dir,
    server_tls,
    stop_on_signals,
    traversal_limit,
)
from proofrace.backends.pool import Place, Pool
from proofrace.backends.registry import Registry
from proofrace.backends.watchdog import OrphanGuard
from proofrace.config import Settings, split_host_port
from proofrace.core.model import CancelCause, CancelReason
from proofrace.observe.http import MetricsEndpoint
from proofrace.observe.metrics import Metrics
from proofrace.observe.telemetry import Telemetry
from proofrace.wire.connection import Connection
from proofrace.wire.connection import dial as open_socket
from proofrace.wire.listener import RpcListener
from proofrace.wire.promises import first_of
from proofrace.wire.remote import WorkerInfo, write_worker_info
from proofrace.wire.worker_server import WorkerServer

_log = structlog.get_logger("proofrace.worker")
_SHUTDOWN = CancelReason(CancelCause.SHUTDOWN, "the worker is shutting down")


async def work(settings: Settings) -> None:
    registry = Registry.load([Path(settings.provers_file)] if settings.provers_file else [])
    registry.probe()
    temp_root = scratch_dir(settings)
    guard = OrphanGuard.start(temp_root)
    slots = settings.slots or os.cpu_count() or 1
    # The worker's own pool keeps it to its advertised slots whoever asks.
    pool = Pool()
    pool.add(Place("local", local_backend(settings, registry, guard, temp_root), slots))
    info = WorkerInfo(settings.name or socket.gethostname(), tuple(registry.info()), slots)
    metrics = Metrics()
    metrics.info.info({"version": __version__, "role": "worker"})
    telemetry = Telemetry(metrics)
    servers: weakref.WeakSet[WorkerServer] = weakref.WeakSet()

    def new_server(connection: Connection) -> WorkerServer:
        server = WorkerServer(pool, info, telemetry, connection)
        servers.add(server)
        connection.on_close(server.connection_lost)
        return server

    stop = stop_on_signals()
    endpoint = MetricsEndpoint(metrics.registry, healthy=lambda: not stop.is_set())
    listener = RpcListener(
        new_server,
        traversal_limit_words=traversal_limit(settings),
        tls=server_tls(settings),
        on_connections=metrics.connections.inc,
    )
    tasks: list[asyncio.Future[None]] = []
    try:
        endpoints = [await listener.listen_tcp(*split_host_port(e)) for e in settings.listen]
        metrics_port = (
            await endpoint.start(*split_host_port(settings.metrics)) if settings.metrics else None
        )
        if settings.dispatcher:
            tasks.append(
                asyncio.ensure_future(keep_registered(dial_of(settings), new_server, info, stop))
            )
        _log.info(
            "worker.ready",
            name=info.name,
            slots=slots,
            rpc=[str(e) for e in endpoints],
            dispatcher=settings.dispatcher or None,
            metrics_port=metrics_port,
            provers=[i.name for i in info.provers if i.available],
            pid=os.getpid(),
        )
        await stop.wait()
        _log.info("worker.stopping")
    finally:
        stop.set()
        await asyncio.gather(*(s.drain(_SHUTDOWN) for s in servers), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.stop_accepting()
        await listener.close_connections()
        await endpoint.close()
        guard.close()
        shutil.rmtree(temp_root, ignore_errors=True)
        _log.info("worker.stopped")


@dataclass(frozen=True)
class Dial:
    """How to reach the dispatcher."""

    address: str
    credential: str | None = None
    tls: ssl.SSLContext | None = None


class Refused(Exception):
    pass


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
    backoff = 0.5
    while not stop.is_set():
        try:
            await _registered(dial, new_server, info, stop)
            backoff = 0.5
        except (OSError, capnp.KjException, Refused) as error:
            _log.warning(
                "worker.dispatcher_unreachable", dispatcher=dial.address, error=str(error)[:120]
            )
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, 30.0)


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
        dispatcher = await _dispatcher(client.bootstrap(), dial.credential)
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


async def _dispatcher(bootstrap: Any, credential: str | None) -> Any:
    compiled = schema.load()
    if credential is None:
        return bootstrap.cast_as(compiled.Dispatcher)
    result = (await bootstrap.cast_as(compiled.Gate).login(credential)).result
    if result.which() == "refused":
        raise Refused(f"login refused: {result.refused.message}")
    return result.dispatcher
