"""`proofrace serve` and `proofrace worker`: settings, logging, then the event loop."""

from __future__ import annotations

import argparse
import socket
import sys

import structlog

from proofrace import app, runtime, worker_app
from proofrace.backends.registry import RegistryError
from proofrace.config import DEFAULT_WORKER_METRICS_PORT, ConfigError, Settings
from proofrace.observe import logs

# A worker dials out by default; it listens only when told to.
WORKER_DEFAULTS = {"metrics": f"127.0.0.1:{DEFAULT_WORKER_METRICS_PORT}"}


def run_serve(args: argparse.Namespace) -> int:
    worker = args.command == "worker"
    flags = {
        name: getattr(args, name, None)
        for name in (
            "listen", "unix", "metrics", "provers_file", "log_format", "log_level",
            "local_slots", "workers", "dispatcher", "name", "slots", "credential_file",
            "dispatcher_ca", "worker_secret_file", "workers_ca",
        )
    }  # fmt: skip
    try:
        settings = Settings.load(
            args.config,
            overrides=flags,
            defaults=WORKER_DEFAULTS if worker else None,
            local_default=not worker,
        )
        if worker and not (settings.dispatcher or settings.listen):
            raise ConfigError("a worker needs a dispatcher to dial, or an address to listen on")
    except ConfigError as error:
        print(f"proofrace {args.command}: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)  # type: ignore[arg-type]
    if worker:
        # Every line a worker logs names it, as the dispatcher's logs and metrics do.
        structlog.contextvars.bind_contextvars(worker=settings.name or socket.gethostname())
    try:
        runtime.run(worker_app.work(settings) if worker else app.serve(settings))
    except (RegistryError, OSError) as error:
        logs.flush()
        print(f"proofrace {args.command}: {error}", file=sys.stderr)
        return 1
    logs.flush()
    return 0
