"""The dispatcher: races over a pool of local slots and remote workers, served over RPC.

Shutdown order (SIGTERM or SIGINT): report unhealthy and refuse new solves, stop accepting,
cancel every race with reason `shutdown` and wait until every prover is reaped, close the
connections, then release the orphan guard. Nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import structlog

from proofrace import __version__
from proofrace.backends.pool import Place, Pool
from proofrace.cache.key import entry_digest
from proofrace.cache.open import open_store
from proofrace.cache.store import StoreError
from proofrace.cache.verdicts import VerdictCache
from proofrace.config import Settings, split_host_port
from proofrace.observe.cache_telemetry import CacheTelemetry
from proofrace.observe.telemetry import Telemetry
from proofrace.race.plan import RaceLimits
from proofrace.race.service import RaceService
from proofrace.runtime import runtime
from proofrace.wire.capabilities import ConnectionLimits, DispatcherServer, GateServer
from proofrace.wire.connection import Connection
from proofrace.wire.remote import WorkerDirectory

_log = structlog.get_logger("proofrace")


async def serve(settings: Settings) -> None:
    try:
        await _serve(settings)
    finally:
        _log.info("server.stopped")


async def _serve(settings: Settings) -> None:
    async with runtime(settings, {"version": __version__}) as rt:
        # With no local slots, this server's own provers are still known: a request naming
        # one gets `proverUnavailable` until a worker that runs it registers.
        pool = Pool(known=rt.registry.info())
        if settings.local_slots != 0:
            pool.add(Place("local", rt.local_backend(), settings.local_slots))
        workers = WorkerDirectory(pool, settings.grace_s, on_count=rt.metrics.workers.inc)
        cache_telemetry = CacheTelemetry(rt.metrics)
        cache = await open_cache(settings, cache_telemetry)
        specs = rt.registry.specs
        service = RaceService(
            pool,
            Telemetry(rt.metrics),
            race_limits(settings),
            cache=cache,
            joins=cache_telemetry,
            entry_digest=lambda p: entry_digest(specs[p]) if p in specs else "",
            share=settings.share_races,
        )
        secret = settings.secret()
        listener = rt.listener(
            bootstrap(settings, secret, service, workers),
            idle_timeout_s=settings.idle_timeout_s,
            login_timeout_s=settings.login_timeout_s if secret else 0.0,
        )
        dialers = [
            asyncio.ensure_future(workers.dial(*split_host_port(address), rt.stop))
            for address in settings.workers
        ]
        try:
            rpc, metrics_port = await rt.open(unix=True, healthy=lambda: service.accepting)
            _log.info(
                "server.ready",
                version=__version__,
                rpc=rpc,
                metrics_port=metrics_port,
                provers=[i.name for i in rt.registry.info() if i.available],
                pid=os.getpid(),
            )
            await rt.stop.wait()
            _log.info("server.stopping", in_flight=service.in_flight)
        finally:
            rt.stop.set()
            await asyncio.gather(*dialers, return_exceptions=True)
            await listener.stop_accepting()
            await service.shutdown()
            if cache is not None:
                await cache.close()


def bootstrap(
    settings: Settings, secret: bytes, service: RaceService, workers: WorkerDirectory
) -> Callable[[Connection], DispatcherServer | GateServer]:
    """What each connection is served first: the Dispatcher, or a Gate when a secret is set."""
    limits = ConnectionLimits(
        max_solves=settings.max_solves_per_connection, idle_timeout_s=settings.idle_timeout_s
    )

    def serve_connection(connection: Connection) -> DispatcherServer | GateServer:
        def dispatcher() -> DispatcherServer:
            return DispatcherServer(service, connection, workers, limits)

        if not secret:
            connection.authenticated = True
            return dispatcher()
        return GateServer(secret, dispatcher, connection, limits)

    return serve_connection


async def open_cache(settings: Settings, telemetry: CacheTelemetry) -> VerdictCache | None:
    """The verdict cache, or None: off, or its store cannot be opened. A cache is never worth
    refusing to serve: without one, every solve races (and the log says why)."""
    try:
        store = await open_store(
            settings.cache, settings.cache_url, Path(settings.cache_file()),
            settings.cache_max_entries,
        )  # fmt: skip
    except StoreError as error:
        telemetry.cache_error("open", error)
        _log.error("cache.unavailable", store=settings.cache, error=str(error))
        return None
    if store is None:
        return None
    with contextlib.suppress(StoreError):
        telemetry.metrics.cache_entries.set(await store.size())
    _log.info("cache.ready", store=store.name, max_entries=settings.cache_max_entries)
    return VerdictCache(store, telemetry)


def race_limits(settings: Settings) -> RaceLimits:
    return RaceLimits(
        max_request_bytes=settings.max_request_bytes,
        default_timeout_s=settings.default_timeout_s,
        max_timeout_s=settings.max_timeout_s,
        max_attempts=settings.max_attempts_per_solve,
        max_solves=settings.max_solves,
    )
