"""`proofrace provers`."""

from __future__ import annotations

import argparse
import asyncio
import sys

import capnp

from proofrace.cli import connect
from proofrace.cli.errors import Failure, lost
from proofrace.core.model import ProverInfo


def run_provers(args: argparse.Namespace) -> int:
    try:
        provers = asyncio.run(capnp.run(_provers(args)))
    except Failure as failure:
        print(f"proofrace provers: {failure.message}", file=sys.stderr)
        return failure.code
    width = max((len(p.name) for p in provers), default=6)
    print(f"{'prover':<{width}}  {'version':<12}  {'formats':<16}  available")
    for p in provers:
        formats = ",".join(f.value for f in p.formats)
        available = "yes" if p.available else "no"
        print(f"{p.name:<{width}}  {p.version or '-':<12}  {formats:<16}  {available}")
    return 0


async def _provers(args: argparse.Namespace) -> list[ProverInfo]:
    client = await connect.connect(args)
    try:
        return await client.provers()
    except Exception as error:
        raise lost(error, args.addr) from None
    finally:
        await client.close()
