"""How the command-line clients reach a server: address, credential, TLS, and a bounded wait."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
from pathlib import Path

from proofrace.cli.errors import EXIT_NOINPUT, Failure, connect_failure
from proofrace.client import Client
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
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the server to answer (default: 10)",
    )


def credential(args: argparse.Namespace) -> str | None:
    if args.credential_file:
        try:
            return Path(args.credential_file).read_text().strip()
        except OSError as error:
            raise Failure(
                f"cannot read the credential file {args.credential_file}: {error.strerror}",
                EXIT_NOINPUT,
            ) from None
    return os.environ.get(CREDENTIAL_VARIABLE) or None


def tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not (args.tls_ca or args.tls_cert):
        return None
    try:
        context = ssl.create_default_context(cafile=args.tls_ca)
        if args.tls_cert:
            context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as error:
        raise Failure(f"cannot load the TLS files: {error}", EXIT_NOINPUT) from None
    return context


async def connect(args: argparse.Namespace) -> Client:
    """A connected (and logged-in) client, or a Failure that says why not."""
    context = tls(args)
    secret = credential(args)
    try:
        return await asyncio.wait_for(
            Client.connect(args.addr, credential=secret, tls=context), args.connect_timeout
        )
    except Exception as error:
        raise connect_failure(error, args.addr, tls=context is not None) from None
