"""`proofrace serve`."""

from __future__ import annotations

import argparse
import sys

from proofrace import app
from proofrace.backends.registry import RegistryError
from proofrace.config import ConfigError, Settings
from proofrace.observe import logs


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(
            args.config,
            overrides={
                "listen": args.listen,
                "unix": args.unix,
                "metrics": args.metrics,
                "provers_file": args.provers_file,
                "log_format": args.log_format,
                "log_level": args.log_level,
            },
        )
    except ConfigError as error:
        print(f"proofrace serve: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)  # type: ignore[arg-type]
    try:
        app.run(settings)
    except (RegistryError, OSError) as error:
        print(f"proofrace serve: {error}", file=sys.stderr)
        return 1
    return 0
