"""Blocking helpers for scripts: each call connects, does one thing, and disconnects."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import capnp

from proofrace.client.connection import Client
from proofrace.core.model import Format, ProverInfo, SolveOutcome, Strategy

T = TypeVar("T")


def _run(
    address: str,
    work: Callable[[Client], Awaitable[T]],
    credential: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> T:
    async def main() -> T:
        async with Client.connect(address, credential=credential, tls=tls) as client:
            return await work(client)

    result: T = asyncio.run(capnp.run(main()))
    return result


def solve(
    address: str,
    content: bytes | str,
    *,
    provers: Sequence[str] = (),
    format: Format = Format.AUTO,
    strategy: Strategy = Strategy.FIRST_WINS,
    time_limit: float | None = None,
    credential: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> SolveOutcome:
    async def work(client: Client) -> SolveOutcome:
        job = await client.solve(
            content, provers=provers, format=format, strategy=strategy, time_limit=time_limit
        )
        async with job:
            return await job.result()

    return _run(address, work, credential, tls)


def provers(
    address: str, credential: str | None = None, tls: ssl.SSLContext | None = None
) -> list[ProverInfo]:
    return _run(address, lambda client: client.provers(), credential, tls)
