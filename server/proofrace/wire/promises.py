"""Small helpers for pycapnp promises."""

from __future__ import annotations

import asyncio
from typing import Any


async def answer(promise: Any) -> Any:
    """Await a pycapnp promise inside a coroutine, so it can become a cancellable task:
    cancelling that task cancels the call, and the peer's handler sees the cancellation."""
    return await promise


async def first_of(disconnected: Any, stop: asyncio.Event) -> None:
    """Until a connection's disconnect promise resolves or `stop` is set."""
    lost = asyncio.ensure_future(answer(disconnected))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        stopping.cancel()
