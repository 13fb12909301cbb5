"""`proofrace provers`."""

from __future__ import annotations

import argparse
import sys

from proofrace.cli import connect
from proofrace.client import ConnectError, sync


def run_provers(args: argparse.Namespace) -> int:
    try:
        provers = sync.provers(args.addr, connect.credential(args), connect.tls(args))
    except (OSError, ConnectError) as error:
        print(f"proofrace provers: cannot reach {args.addr}: {error}", file=sys.stderr)
        return 2
    width = max((len(p.name) for p in provers), default=6)
    print(f"{'prover':<{width}}  {'version':<12}  {'formats':<16}  available")
    for p in provers:
        formats = ",".join(f.value for f in p.formats)
        available = "yes" if p.available else "no"
        print(f"{p.name:<{width}}  {p.version or '-':<12}  {formats:<16}  {available}")
    return 0
