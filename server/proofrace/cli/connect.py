"""How the command-line clients reach a server: address, credential, TLS."""

from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path

from proofrace.config import default_socket

CREDENTIAL_VARIABLE = "PROOFRACE_CREDENTIAL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--addr",
        default=os.environ.get("PROOFRACE_ADDR", f"unix:{default_socket()}"),
        help="host:port or unix:/path (default: $PROOFRACE_ADDR, else the local socket)",
    )
    parser.add_argument(
        "--credential-file", help=f"login secret for the server (or ${CREDENTIAL_VARIABLE})"
    )
    parser.add_argument("--tls-ca", help="CA certificate (PEM) to check a TLS server against")
    parser.add_argument("--tls-cert", help="client certificate (PEM), for mutual TLS")
    parser.add_argument("--tls-key", help="client key (PEM), for mutual TLS")


def credential(args: argparse.Namespace) -> str | None:
    if args.credential_file:
        return Path(args.credential_file).read_text().strip()
    return os.environ.get(CREDENTIAL_VARIABLE) or None


def tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not (args.tls_ca or args.tls_cert):
        return None
    context = ssl.create_default_context(cafile=args.tls_ca)
    if args.tls_cert:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    return context
