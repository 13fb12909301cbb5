"""A value set once, which any number of callers await, each free to give up.

`asyncio.shield` over one shared future gives the same guarantee (a waiter's cancellation
does not cancel the value), but wakes each waiter two loop turns after the value is set: the
shield's own callback first, then the waiting task. Here each waiter awaits a future of its
own, set with the value: one turn. On a small solve these turns are a measurable part of the
time between a prover's reap and the client's answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    def __init__(self) -> None:
        self._value: T | None = None
        self._done = False
        self._waiting: list[asyncio.Future[T]] = []
        self._callbacks: list[Callable[[T], None]] = []

    @property
    def done(self) -> bool:
        return self._done

    def result(self) -> T:
        if not self._done:
            raise asyncio.InvalidStateError("not set yet")
        return self._value  # type: ignore[return-value]

    def set(self, value: T) -> bool:
        """Set it, wake every waiter and run every callback, in the caller's own stack.
        False, and nothing changes, if it was set already."""
        if self._done:
            return False
        self._value, self._done = value, True
        for waiting in self._waiting:
            if not waiting.done():
                waiting.set_result(value)
        self._waiting.clear()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(value)
        return True

    def on_set(self, callback: Callable[[T], None]) -> None:
        """`callback(value)` once set: then, synchronously, or now if it is set already."""
        if self._done:
            callback(self._value)  # type: ignore[arg-type]
        else:
            self._callbacks.append(callback)

    def wait(self) -> asyncio.Future[T]:
        """A future of this caller's own, done with the value once it is set: cancelling it
        (giving up) leaves the value and every other waiter alone."""
        waiting: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._done:
            waiting.set_result(self._value)  # type: ignore[arg-type]
        else:
            self._waiting.append(waiting)
            waiting.add_done_callback(self._forget)
        return waiting

    def _forget(self, waiting: asyncio.Future[T]) -> None:
        if waiting in self._waiting:  # given up before it was set
            self._waiting.remove(waiting)
