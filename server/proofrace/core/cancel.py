"""A cancellation scope: cancel once with a reason, observe, derive children.

Modelled on tokio-util's CancellationToken and Trio's cancel scopes. Cancelling records the
instant it was *called*; whoever acts on it (a backend killing a process) measures when it
*took effect*. The difference is the preemption latency.

Callbacks run synchronously inside `cancel()`, so a backend can send its signal in the same
call stack as the trigger instead of waiting for the event loop to schedule a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

from proofrace.core.model import CancelReason

Callback = Callable[[CancelReason], None]
T = TypeVar("T")


class CancelScope:
    """A cancellation that happens once, with a reason, and can be watched three ways.

    - `cancel_called` says that cancel was *called*, not that anything has stopped yet:
      whoever acts on it reports when the cancel took effect.
    - `on_cancel(callback)` runs the callback synchronously inside `cancel()`.
    - `await wait()` returns the reason once cancelled. It is cancel-safe: a task cancelled
      while it waits loses nothing (the reason stays on the scope) and leaves no waiter behind,
      so it can be raced against other events with `asyncio.wait` and dropped.

    `child()` derives a scope cancelled with its parent (same reason and instant), not the
    reverse.
    """

    def __init__(self) -> None:
        self._reason: CancelReason | None = None
        self._called_ns: int | None = None
        self._callbacks: dict[int, Callback] = {}
        self._next_id = 0
        self._waiters: list[asyncio.Future[CancelReason]] = []

    @property
    def cancel_called(self) -> bool:
        """True once `cancel` was called: the cancel may not have taken effect yet."""
        return self._reason is not None

    @property
    def reason(self) -> CancelReason | None:
        return self._reason

    @property
    def called_ns(self) -> int | None:
        """`time.monotonic_ns()` when cancel was first called."""
        return self._called_ns

    def cancel(self, reason: CancelReason, *, at_ns: int | None = None) -> bool:
        """Cancel with `reason` unless already cancelled. True if this call did it."""
        if self._reason is not None:
            return False
        self._reason = reason
        self._called_ns = at_ns if at_ns is not None else time.monotonic_ns()
        callbacks, self._callbacks = list(self._callbacks.values()), {}
        for callback in callbacks:
            callback(reason)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(reason)
        self._waiters.clear()
        return True

    def on_cancel(self, callback: Callback) -> Callable[[], None]:
        """Run `callback(reason)` on cancel (at once if already cancelled). Returns a remover."""
        if self._reason is not None:
            callback(self._reason)
            return lambda: None
        key = self._next_id
        self._next_id += 1
        self._callbacks[key] = callback

        def remove() -> None:
            self._callbacks.pop(key, None)

        return remove

    def child(self) -> CancelScope:
        """A scope cancelled with this one (same reason and instant), but not the reverse."""
        child = CancelScope()

        def propagate(reason: CancelReason) -> None:
            child.cancel(reason, at_ns=self._called_ns)

        remove = self.on_cancel(propagate)
        child.on_cancel(lambda _reason: remove())
        return child

    async def wait(self) -> CancelReason:
        """The reason, once cancelled. Cancel-safe (see the class)."""
        if self._reason is not None:
            return self._reason
        waiter: asyncio.Future[CancelReason] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


async def outlast(future: asyncio.Future[T]) -> T:
    """Wait for `future` even while the waiting task is being cancelled: for cleanup that must
    finish (a process must be reaped) before the cancellation may proceed."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(future)
    return future.result()
