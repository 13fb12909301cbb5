"""The worker's side: a `Worker` capability that runs attempts with the local backend.

One WorkerServer serves one connection to a dispatcher, so when that connection dies the
attempts it started are the ones to stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from proofrace import schema
from proofrace.backends.base import Backend
from proofrace.core.cancel import CancelScope, outlast
from proofrace.core.model import AttemptResult, CancelCause, CancelReason, Format, Problem
from proofrace.core.progress import AttemptProgress
from proofrace.race.events import RaceObserver
from proofrace.wire import convert
from proofrace.wire.calls import rpc_method
from proofrace.wire.connection import Connection
from proofrace.wire.promises import call_task
from proofrace.wire.remote import WorkerInfo, write_worker_info

_schema = schema.load()
_log = structlog.get_logger("proofrace.worker")
_REPORT_TIMEOUT_S = 5.0
_DISCONNECTED = CancelReason(CancelCause.DISCONNECTED, "the dispatcher's connection closed")


class WorkerServer(_schema.Worker.Server):  # type: ignore[misc,name-defined]
    def __init__(
        self,
        backend: Backend,
        info: WorkerInfo,
        observer: RaceObserver,
        connection: Connection,
        on_undelivered: Callable[[str], None] = lambda _event: None,
    ) -> None:
        """`on_undelivered(event)`: an attempt event could not reach the dispatcher."""
        self.connection = connection
        self._on_undelivered = on_undelivered
        self._backend = backend
        self._info = info
        self._observer = observer
        self._running: dict[CancelScope, asyncio.Future[AttemptResult]] = {}
        self._reports: set[asyncio.Task[None]] = set()

    @rpc_method
    async def info(self, _context: Any, **kwargs: Any) -> None:
        write_worker_info(_context.results.init("info"), self._info)

    @rpc_method
    async def run(self, attempt: Any, events: Any, _context: Any, **kwargs: Any) -> None:
        prover = str(attempt.prover)
        solve_id, attempt_id = str(attempt.solveId), str(attempt.attemptId)
        problem = Problem(bytes(attempt.content), Format(str(attempt.format)))
        scope = CancelScope()
        progress = AttemptProgress(
            prover, attempt_id, on_started=self._started(events, solve_id, attempt_id, prover)
        )
        task = asyncio.ensure_future(
            self._backend.run(
                prover,
                problem,
                timeout_s=int(attempt.timeoutMs) / 1000,
                scope=scope,
                progress=progress,
            )
        )
        self._running[scope] = task
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The dispatcher cancelled the call, or its connection died: preempt and report.
            scope.cancel(
                _DISCONNECTED
                if self.connection.is_closed()
                else CancelReason(CancelCause.CLIENT, "the dispatcher cancelled the call")
            )
            result = await outlast(task)
            raise
        finally:
            self._running.pop(scope, None)
            if task.done() and not task.cancelled() and task.exception() is None:
                self._ended(events, solve_id, attempt_id, task.result())
        convert.write_attempt(_context.results.init("result"), result)

    def connection_lost(self) -> None:
        """Stop every attempt this dispatcher started."""
        self.stop_all(CancelReason(CancelCause.DISCONNECTED, "the dispatcher's connection closed"))

    def stop_all(self, reason: CancelReason) -> None:
        for scope in list(self._running):
            scope.cancel(reason)

    async def drain(self, reason: CancelReason) -> None:
        """Stop every attempt and return once each is reaped and its answer sent."""
        tasks = list(self._running.values())
        self.stop_all(reason)
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._reports, return_exceptions=True)

    def _started(self, events: Any, solve_id: str, attempt_id: str, prover: str) -> Any:
        def notify(pid: int) -> None:
            self._observer.attempt_started(solve_id, attempt_id, prover, pid)
            self._keep("started", attempt_id, events.started(pid))

        return notify

    def _ended(self, events: Any, solve_id: str, attempt_id: str, result: AttemptResult) -> None:
        self._observer.attempt_finished(solve_id, attempt_id, result)
        request = events.ended_request()
        convert.write_attempt(request.init("result"), result)
        self._keep("ended", attempt_id, request.send())

    def _keep(self, event: str, attempt_id: str, promise: Any) -> None:
        """Send an event and hold on to it until answered (a dropped promise is never sent);
        one that fails is logged with its cause and counted: the dispatcher will report the
        attempt's worker lost, and this is where to learn why."""

        async def deliver() -> None:
            try:
                await asyncio.wait_for(call_task(promise), _REPORT_TIMEOUT_S)
            except TimeoutError:
                self._undelivered(event, attempt_id, f"no answer within {_REPORT_TIMEOUT_S:g} s")
            except Exception as error:
                self._undelivered(event, attempt_id, cause_of(error))

        task = asyncio.ensure_future(deliver())
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    def _undelivered(self, event: str, attempt_id: str, cause: str) -> None:
        _log.warning("worker.event_undelivered", report=event, attempt=attempt_id, error=cause)
        self._on_undelivered(event)


def cause_of(error: BaseException) -> str:
    """Why a call failed, in one line: for an error raised in a Python peer, the last line of
    its traceback (the exception and its message) rather than the traceback's heading."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("stack:")]
    if not lines:
        return type(error).__name__
    line = lines[-1] if "Traceback (most recent call last)" in lines[0] else lines[0]
    return line.strip()[:200]
