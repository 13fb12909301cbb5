"""Assembling and running a server: backends, races, wire, metrics; and stopping it cleanly.

Shutdown order (SIGTERM or SIGINT): report unhealthy and refuse new solves, stop accepting,
cancel every race with reason `shutdown` and wait until every prover is reaped, close the
connections, then release the orphan guard. Nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import ssl
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import capnp
import structlog

from proofrace import __version__
from proofrace.backends.local import LocalBackend, LocalSettings
from proofrace.backends.pool import Place, Pool
from proofrace.backends.registry import Registry
from proofrace.backends.watchdog import OrphanGuard
from proofrace.config import Settings, split_host_port
from proofrace.observe.http import MetricsEndpoint
from proofrace.observe.metrics import Metrics
from proofrace.observe.telemetry import Telemetry
from proofrace.race.plan import RaceLimits
from proofrace.race.service import RaceService
from proofrace.wire.capabilities import ConnectionLimits, DispatcherServer, GateServer
from proofrace.wire.connection import Connection
from proofrace.wire.listener import RpcListener
from proofrace.wire.remote import WorkerDirectory

_log = structlog.get_logger("proofrace")


async def serve(settings: Settings) -> None:
    registry = Registry.load([Path(settings.provers_file)] if settings.provers_file else [])
    registry.probe()
    temp_root = scratch_dir(settings)
    guard = OrphanGuard.start(temp_root)
    metrics = Metrics()
    metrics.info.info({"version": __version__})
    # With no local slots, this server's own provers are still known: a request naming one gets
    # `proverUnavailable` until a worker that runs it registers.
    pool = Pool(known=registry.info())
    if settings.local_slots != 0:
        pool.add(
            Place(
                "local", local_backend(settings, registry, guard, temp_root), settings.local_slots
            )
        )
    workers = WorkerDirectory(pool, settings.grace_s, on_count=metrics.workers.inc)
    service = RaceService(
        pool,
        Telemetry(metrics),
        RaceLimits(
            max_request_bytes=settings.max_request_bytes,
            default_timeout_s=settings.default_timeout_s,
            max_timeout_s=settings.max_timeout_s,
            max_attempts=settings.max_attempts_per_solve,
            max_solves=settings.max_solves,
        ),
    )
    secret = settings.secret()
    limits = ConnectionLimits(
        max_solves=settings.max_solves_per_connection, idle_timeout_s=settings.idle_timeout_s
    )

    def bootstrap(connection: Connection) -> DispatcherServer | GateServer:
        def dispatcher() -> DispatcherServer:
            return DispatcherServer(service, connection, workers, limits)

        if not secret:
            connection.authenticated = True
            return dispatcher()
        return GateServer(secret, dispatcher, connection, limits)

    listener = RpcListener(
        bootstrap,
        traversal_limit_words=traversal_limit(settings),
        tls=server_tls(settings),
        idle_timeout_s=settings.idle_timeout_s,
        login_timeout_s=settings.login_timeout_s if secret else 0.0,
        on_connections=metrics.connections.inc,
    )
    endpoint = MetricsEndpoint(metrics.registry, healthy=lambda: service.accepting)

    stop = stop_on_signals()
    dialers = [
        asyncio.ensure_future(workers.dial(*split_host_port(address), stop))
        for address in settings.workers
    ]
    try:
        endpoints = [await listener.listen_tcp(*split_host_port(e)) for e in settings.listen]
        if settings.unix:
            endpoints.append(listener.listen_unix(settings.unix))
        metrics_port = (
            await endpoint.start(*split_host_port(settings.metrics)) if settings.metrics else None
        )
        _log.info(
            "server.ready",
            version=__version__,
            rpc=[str(e) for e in endpoints],
            metrics_port=metrics_port,
            provers=[i.name for i in registry.info() if i.available],
            pid=os.getpid(),
        )
        await stop.wait()
        _log.info("server.stopping", in_flight=service.in_flight)
    finally:
        stop.set()
        await asyncio.gather(*dialers, return_exceptions=True)
        await listener.stop_accepting()
        await service.shutdown()
        await listener.close_connections()
        await endpoint.close()
        guard.close()
        shutil.rmtree(temp_root, ignore_errors=True)
        _log.info("server.stopped")


def traversal_limit(settings: Settings) -> int:
    """Room for the largest accepted problem twice over, plus the message's own structure;
    anything larger is refused by Cap'n Proto before it reaches us."""
    return (settings.max_request_bytes // 8) * 2 + (1 << 20)


def server_tls(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.tls_client_ca)
    return context


def local_backend(
    settings: Settings, registry: Registry, guard: OrphanGuard, temp_root: Path
) -> LocalBackend:
    return LocalBackend(
        registry,
        LocalSettings(
            memory_bytes=settings.memory_limit_mb * 1024 * 1024,
            file_bytes=settings.temp_disk_mb * 1024 * 1024,
            grace_seconds=settings.grace_s,
            output_tail_bytes=settings.output_tail_bytes,
        ),
        guard,
        temp_root,
    )


def scratch_dir(settings: Settings) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"proofrace-{os.getpid()}-", dir=settings.temp_dir or None))


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (a second one is not needed: shutdown is bounded)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def run(main: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(capnp.run(main))
