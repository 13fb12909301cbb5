"""`proofrace cache stats | invalidate`: the operator's hands on the verdict store that the
settings name (the same `--config`, PROOFRACE_* variables and defaults as `serve`). It works on
the store directly, so it works with the service running or stopped."""

from __future__ import annotations

import argparse
import asyncio
import sys

from proofrace.cache.open import open_store
from proofrace.cache.store import StoreError
from proofrace.config import ConfigError, Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file ([server] table)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("stats", help="how many verdicts the store holds")
    invalidate = actions.add_parser(
        "invalidate", help="remove the verdicts of races a prover took part in"
    )
    invalidate.add_argument("--prover", required=True, help="the prover's registry name")
    invalidate.add_argument(
        "--version", help="only races it ran at this version (default: every version)"
    )


def run_cache(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.config, local_default=False)
    except ConfigError as error:
        print(f"proofrace cache: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, settings))
    except StoreError as error:
        print(f"proofrace cache: {error}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    store = await open_store(
        settings.cache, settings.cache_url, settings.cache_file(), settings.cache_max_entries
    )
    if store is None:
        print("proofrace cache: the cache is off (cache = off)", file=sys.stderr)
        return 2
    where = settings.cache_url if store.name == "redis" else str(settings.cache_file())
    try:
        if args.action == "stats":
            print(f"{store.name} {where}: {await store.size()} verdicts")
        else:
            removed = await store.invalidate(args.prover, args.version)
            version = f" {args.version}" if args.version else ""
            print(f"removed {removed} verdicts found with {args.prover}{version}")
    finally:
        await store.close()
    return 0
