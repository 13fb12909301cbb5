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
from proofrace.runtime import client_tls, runtime
from proofrace.wire.capabilities import (
    ConnectionLimits,
    DispatcherServer,
    GateServer,
    LoginGuard,
    Roles,
    WorkerHubServer,
)
from proofrace.wire.connection import Connection
from proofrace.wire.limits import IdentityShare
from proofrace.wire.remote import WorkerDialing, WorkerDirectory, WorkerLimits
from proofrace.wire.throttle import LoginThrottle

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
        rt.metrics.watch_slots(pool)
        workers = WorkerDirectory(
            pool,
            settings.grace_s,
            on_count=rt.metrics.workers.inc,
            known=rt.registry.info(),
            limits=WorkerLimits(
                max_workers=settings.max_workers,
                max_slots=settings.max_worker_slots,
                output_tail_bytes=settings.output_tail_bytes,
            ),
            on_change=rt.metrics.worker_changed,
        )
        cache_telemetry = CacheTelemetry(rt.metrics)
        cache = await open_cache(settings, cache_telemetry)
        # Registry entries are fixed once loaded: each digest is computed once.
        digests = {name: entry_digest(spec) for name, spec in rt.registry.specs.items()}
        service = RaceService(
            pool,
            Telemetry(rt.metrics),
            race_limits(settings),
            cache=cache,
            joins=cache_telemetry,
            entry_digest=lambda p: digests.get(p, ""),
            share=settings.share_races,
        )
        roles = roles_of(settings)
        listener = rt.listener(
            bootstrap(settings, roles, service, workers),
            idle_timeout_s=settings.idle_timeout_s,
            login_timeout_s=settings.login_timeout_s
            if roles.client_secret or roles.worker_ou
            else 0.0,
        )
        dialing = WorkerDialing(
            settings.worker_credential().decode() or None, client_tls(settings, settings.workers_ca)
        )
        dialers = [
            asyncio.ensure_future(workers.dial(*split_host_port(address), rt.stop, dialing))
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
                # How callers are let in; /metrics and /healthz stay plain HTTP either way.
                tls=bool(settings.tls_cert),
                mutual_tls=bool(settings.tls_client_ca),
                login=bool(roles.client_secret),
                worker_login=bool(roles.worker_secret or roles.worker_ou),
                insecure_tcp=settings.insecure_tcp,
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


def roles_of(settings: Settings) -> Roles:
    roles = Roles(
        client_secret=settings.secret(),
        worker_secret=settings.worker_credential(),
        worker_ou=settings.tls_worker_ou,
        open_registration=settings.open_registration,
    )
    if roles.open_registration:
        _log.warning(
            "server.open_registration",
            why="any client may register a worker and so answer other clients' problems",
        )
    return roles


def bootstrap(
    settings: Settings, roles: Roles, service: RaceService, workers: WorkerDirectory
) -> Callable[[Connection], DispatcherServer | GateServer]:
    """What each connection is served first: the Dispatcher, or a Gate when a secret is set
    (or the peer's certificate is a worker's)."""
    peer_limits = settings.peer_limits()
    limits = ConnectionLimits(
        max_solves=settings.max_solves_per_connection,
        idle_timeout_s=settings.idle_timeout_s,
        peer=peer_limits,
        share=IdentityShare(peer_limits),
    )
    throttle = LoginThrottle(settings.max_failed_logins_per_address, settings.login_backoff_s)

    def serve_connection(connection: Connection) -> DispatcherServer | GateServer:
        logins = LoginGuard(connection, limits, throttle)

        def dispatcher() -> DispatcherServer:
            return DispatcherServer(service, connection, workers, limits, roles, logins)

        if not roles.client_secret and not roles.worker_certificate(connection):
            connection.authenticated = True
            return dispatcher()
        return GateServer(
            roles, dispatcher, lambda: WorkerHubServer(workers, connection), connection, logins
        )

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
