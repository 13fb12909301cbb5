"""`proofrace worker`: runs attempts for a dispatcher, with the same backends as its own.

It dials out to the dispatcher and registers (so scaling out is starting more workers), and
can also listen for a dispatcher that dials it (one listed in the dispatcher's `workers`).
On SIGTERM it drains: every attempt is stopped and reaped and its answer sent, then it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
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
from proofrace.backends.pool import Place, Pool
from proofrace.client.login import LoginRefused
from proofrace.config import Settings, split_host_port
from proofrace.core.model import CancelCause, CancelReason
from proofrace.observe.telemetry import Telemetry
from proofrace.runtime import client_tls, runtime
from proofrace.wire.capabilities import ConnectionLimits, LoginGuard
from proofrace.wire.connection import Connection
from proofrace.wire.connection import dial as open_socket
from proofrace.wire.frames import open_stream
from proofrace.wire.promises import call_task, first_of
from proofrace.wire.reconnect import reconnecting
from proofrace.wire.remote import WorkerInfo, write_worker_info
from proofrace.wire.throttle import LoginThrottle
from proofrace.wire.worker_server import WorkerGateServer, WorkerServer

_log = structlog.get_logger("proofrace.worker")


def shutdown_reason(name: str) -> CancelReason:
    return CancelReason(CancelCause.SHUTDOWN, f"worker {name} is shutting down")


async def work(settings: Settings) -> None:
    try:
        await _work(settings)
    finally:
        _log.info("worker.stopped")


async def _work(settings: Settings) -> None:
    name = settings.name or socket.gethostname()
    info_labels = {"version": __version__, "role": "worker", "name": name}
    async with runtime(settings, info_labels) as rt:
        slots = settings.slots or available_cpus()
        # The worker's own pool keeps it to its advertised slots whoever asks.
        pool = Pool()
        pool.add(Place("local", rt.local_backend(), slots))
        rt.metrics.watch_slots(pool)
        info = WorkerInfo(name, tuple(rt.registry.info()), slots)
        shutdown = shutdown_reason(name)
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
                # How it reaches its dispatcher.
                tls=bool(settings.dispatcher_ca),
                login=bool(settings.worker_credential()),
            )
            await rt.stop.wait()
            _log.info("worker.stopping")
        finally:
            rt.stop.set()
            # Nothing new starts here; then each dispatcher is told we leave (it sends no more
            # and moves what ran here elsewhere) before the running attempts are stopped.
            for server in servers:
                server.refuse_new(shutdown)
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(s.drain(shutdown) for s in servers), return_exceptions=True)
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
        loop = asyncio.get_running_loop()
        if dial.tls is None:
            stream = await open_stream(lambda made: loop.create_connection(made, sock=sock))
        else:
            tls = dial.tls
            stream = await open_stream(
                lambda made: loop.create_connection(made, sock=sock, ssl=tls, server_hostname=host)
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
        del response  # it holds the registration too: dropping `registration` must release it
        _log.info("worker.registered", dispatcher=address, name=info.name)
        await first_of(client.on_disconnect(), stop)
        if stop.is_set():
            # Withdraw first, so the dispatcher files this as a drain, not a loss; then stop
            # the attempts while the connection lives, so their answers reach it.
            del registration
            await _withdrawn(client.bootstrap())
            _log.info("worker.withdrawn", dispatcher=address)
            await server.drain(shutdown_reason(info.name))
        else:
            _log.warning("worker.dispatcher_lost", dispatcher=address)
            del registration
    finally:
        connection.mark_closed()  # stops whatever this dispatcher still had running here
        client.close()


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: those it may run on, capped by its cgroup's CPU quota (a
    container's `--cpus`, a pod's CPU limit), which os.cpu_count() does not see."""
    count = len(os.sched_getaffinity(0))
    quota = period = 0.0
    with contextlib.suppress(OSError, ValueError):
        if (cgroup / "cpu.max").exists():  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
            text, period_text = (cgroup / "cpu.max").read_text().split()
            if text != "max":
                quota, period = float(text), float(period_text)
        else:  # cgroup v1
            for folder in ("cpu", "cpu,cpuacct"):
                if (cgroup / folder / "cpu.cfs_quota_us").exists():
                    quota = float((cgroup / folder / "cpu.cfs_quota_us").read_text())
                    period = float((cgroup / folder / "cpu.cfs_period_us").read_text())
                    break
    if quota > 0 and period > 0:
        count = min(count, max(1, math.ceil(quota / period)))
    return max(1, count)


async def _withdrawn(bootstrap: Any) -> None:
    """Until the dispatcher has processed the release of our registration. A release leaves on
    a later turn of the event loop than the call that follows it, so the first round trip may
    overtake it; the second cannot. A `ping` on the bootstrap capability is a round trip
    whatever it is (a bare Gate answers it as unimplemented, counting no failed login);
    bounded, since the dispatcher may be gone meanwhile."""
    dispatcher = bootstrap.cast_as(schema.load().Dispatcher)
    for _ in range(2):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(call_task(dispatcher.ping()), 5.0)


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
