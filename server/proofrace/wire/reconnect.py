"""Keeping a connection up: run a session, and after it ends or fails, try again with back-off."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

FIRST_DELAY_S = 0.5
LONGEST_DELAY_S = 30.0


async def reconnecting(
    session: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    expected: tuple[type[Exception], ...],
    on_failure: Callable[[Exception], None],
) -> None:
    """Run `session()` again and again until `stop` is set.

    A session that returns was established and then lost: the next try comes after the
    shortest delay. A session that raises one of `expected` is reported to `on_failure`, and
    the delay doubles (up to LONGEST_DELAY_S). Anything else is a bug and propagates.
    """
    delay = FIRST_DELAY_S
    while not stop.is_set():
        try:
            await session()
            delay = FIRST_DELAY_S
        except expected as error:
            on_failure(error)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, LONGEST_DELAY_S)
