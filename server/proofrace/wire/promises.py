"""Small helpers for pycapnp promises."""

from __future__ import annotations

import asyncio
from typing import Any


def call_task(promise: Any) -> asyncio.Task[Any]:
    """A pycapnp call (or any promise) as an asyncio task: cancelling the task cancels the
    call, and the peer's handler sees the cancellation."""

    async def awaited() -> Any:
        return await promise

    return asyncio.ensure_future(awaited())


async def first_of(disconnected: Any, stop: asyncio.Event) -> None:
    """Until a connection's disconnect promise resolves or `stop` is set."""
    lost = call_task(disconnected)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        stopping.cancel()
