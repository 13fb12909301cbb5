"""A running solve, held through its pipelined CancelToken."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from proofrace.client.transport import Link
from proofrace.core.model import SolveOutcome, SolveState, SolveStatus
from proofrace.wire import convert


class Job:
    """Handle on one solve. Dropping it (or `release()`) releases the token: the server then
    cancels the race with cause `tokenDropped`, unless it has finished.

    `async with job:` cancels the solve on leaving the block unless its result was read.
    A job keeps its client's connection open; once that client is closed, calls raise
    `ClientClosed`.
    """

    def __init__(self, solve_promise: Any, token: Any, link: Link) -> None:
        # The promise is kept: a pycapnp server never runs a call whose promise was dropped.
        self._solve_promise: Any = solve_promise
        self._token: Any = token
        self._link = link  # its client's connection: once closed, calls raise ClientClosed
        self._outcome: SolveOutcome | None = None

    @property
    def done(self) -> bool:
        return self._outcome is not None

    async def cancel(self, reason: str = "") -> SolveStatus:
        """Ask the server to stop the race. Returns once the cancel was *called*; `result()`
        returns once it took effect (every prover reaped)."""
        with self._link.translating():
            response = await self._live_token().cancel(reason)
        return convert.read_status(response.status)

    async def status(self) -> SolveStatus:
        with self._link.translating():
            response = await self._live_token().status()
        return convert.read_status(response.status)

    async def result(self) -> SolveOutcome:
        if self._outcome is None:
            with self._link.translating():
                response = await self._live_token().result()
            self._outcome = convert.read_outcome(response.outcome)
        return self._outcome

    def release(self) -> None:
        """Drop the token now (as garbage collection would, later)."""
        self._token = None
        self._solve_promise = None

    async def __aenter__(self) -> Job:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._outcome is None and self._token is not None and not self._link.closed:
                status = await self.status()
                if status.state is not SolveState.FINISHED:
                    await self.cancel("the client left the job's scope")
        finally:
            self.release()

    def _live_token(self) -> Any:
        self._link.check()
        if self._token is None:
            raise RuntimeError("this job's token was released")
        return self._token
