"""What a dispatcher and a worker both run, assembled and shut down in one place.

A runtime holds the prover registry, a scratch directory and the orphan guard that cleans up
after it, metrics and their HTTP endpoint, the RPC listener, and the stop event set by
SIGTERM or SIGINT. The role (app.py, worker_app.py) adds its own parts and stops its own
work first; leaving `runtime()` then closes the connections, the metrics endpoint and the
guard, and removes the scratch directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import shutil
import signal
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import capnp
import structlog

from proofrace.backends.local import LocalBackend, LocalSettings
from proofrace.backends.registry import Registry
from proofrace.backends.sandbox import FULL_ABI, make_jail
from proofrace.backends.watchdog import OrphanGuard
from proofrace.config import Settings, split_host_port
from proofrace.observe.http import MetricsEndpoint
from proofrace.observe.metrics import Metrics
from proofrace.wire.connection import Connection
from proofrace.wire.listener import RpcListener

_log = structlog.get_logger("proofrace")


class Runtime:
    def __init__(self, settings: Settings, stop: asyncio.Event, info: dict[str, str]) -> None:
        self.settings = settings
        self.stop = stop
        self.registry = Registry.load(
            [Path(settings.provers_file)] if settings.provers_file else []
        )
        self.registry.probe()
        raise_descriptor_limit(settings.max_connections)
        self.metrics = Metrics()
        self.metrics.info.info(info)
        self.temp_root = Path(
            tempfile.mkdtemp(prefix=f"proofrace-{os.getpid()}-", dir=settings.temp_dir or None)
        )
        try:
            self._guard = OrphanGuard.start(self.temp_root)
        except BaseException:
            shutil.rmtree(self.temp_root, ignore_errors=True)
            raise
        self._endpoint: MetricsEndpoint | None = None
        self._listener: RpcListener | None = None

    def local_backend(self) -> LocalBackend:
        """Raises SandboxError when the sandbox is on but cannot be had."""
        settings = self.settings
        jail, abi = make_jail(
            settings.sandbox,
            settings.sandbox_launcher,
            settings.sandbox_paths,
            settings.sandbox_writable,
        )
        if jail is None or not jail.confine:
            _log.warning(
                "server.sandbox_off",
                why="sandbox = false: provers run unconfined, with the service user's rights",
                rlimits="set by the launcher" if jail else "set by the server after exec",
            )
        else:
            _log.info("server.sandbox", launcher=jail.launcher, landlock_abi=abi)
            if abi < FULL_ABI:
                _log.warning(
                    "server.sandbox_partial",
                    landlock_abi=abi,
                    why="this kernel's Landlock cannot confine TCP (ABI 4) or signals (ABI 6)",
                )
        return LocalBackend(
            self.registry,
            LocalSettings(
                memory_bytes=settings.memory_limit_mb * 1024 * 1024,
                file_bytes=settings.temp_disk_mb * 1024 * 1024,
                grace_seconds=settings.grace_s,
                output_tail_bytes=settings.output_tail_bytes,
                jail=jail,
            ),
            self._guard,
            self.temp_root,
        )

    def listener(self, bootstrap: Callable[[Connection], Any], **options: Any) -> RpcListener:
        """The RPC listener, with the limits and TLS of the settings; `options` go to it."""
        self._listener = RpcListener(
            bootstrap,
            traversal_limit_words=traversal_limit(self.settings),
            tls=server_tls(self.settings),
            on_connections=self.metrics.connections.inc,
            on_accept_failed=self.metrics.accept_failures.inc,
            on_internal_error=self.metrics.internal_errors.inc,
            limits=self.settings.peer_limits(),
            **options,
        )
        return self._listener

    async def open(
        self, *, unix: bool, healthy: Callable[[], bool]
    ) -> tuple[list[str], int | None]:
        """Listen on the configured addresses (and the Unix socket when `unix`), serve the
        metrics; returns the RPC endpoints and the metrics port."""
        assert self._listener is not None
        settings = self.settings
        endpoints = [await self._listener.listen_tcp(*split_host_port(e)) for e in settings.listen]
        if unix and settings.unix:
            endpoints.append(self._listener.listen_unix(settings.unix))
        self._endpoint = MetricsEndpoint(self.metrics.registry, healthy=healthy)
        metrics_port = (
            await self._endpoint.start(*split_host_port(settings.metrics))
            if settings.metrics
            else None
        )
        settle_garbage_collector()
        return [str(e) for e in endpoints], metrics_port

    async def close(self) -> None:
        """Once the role's work has stopped: close every connection (letting pending answers
        out), the metrics endpoint and the guard, and remove the scratch directory."""
        self.stop.set()
        try:
            if self._listener is not None:
                await self._listener.stop_accepting()
                await self._listener.close_connections()
            if self._endpoint is not None:
                await self._endpoint.close()
        finally:
            await self._guard.close()
            shutil.rmtree(self.temp_root, ignore_errors=True)


@contextlib.asynccontextmanager
async def runtime(settings: Settings, info: dict[str, str]) -> AsyncIterator[Runtime]:
    """A runtime for the length of the block, closed on the way out however the block ends."""
    assembled = Runtime(settings, stop_on_signals(), info)
    try:
        yield assembled
    finally:
        await assembled.close()


# Objects allocated (net of those freed) between two collections of the young generation.
_YOUNG_GENERATION = 20_000


def traversal_limit(settings: Settings) -> int:
    """Room for the largest accepted problem twice over, plus the message's own structure;
    anything larger is refused by Cap'n Proto before it reaches us."""
    return (settings.max_request_bytes // 8) * 2 + (1 << 20)


def client_tls(settings: Settings, ca_file: str) -> ssl.SSLContext | None:
    """TLS for dialling out: set when the far end's CA is, with our client certificate if any."""
    if not ca_file:
        return None
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert:
        context.load_cert_chain(settings.client_cert, settings.client_key)
    return context


def settle_garbage_collector() -> None:
    """Once set up: what start-up made (modules, schemas, the registry) is moved out of the
    collector's sight, and the young generation is collected less often. A solve allocates
    a few thousand objects, nearly all freed by reference counting; at the default threshold
    (700) the collector ran several times per solve for nothing."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_GENERATION, middle, old)


def raise_descriptor_limit(connections: int) -> None:
    """Room for every connection allowed, and the provers' pipes and pidfds besides: the
    connection limit, not the descriptor table, is what a flood meets first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * connections + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


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
