"""The worker's side: a `Worker` capability that runs attempts with the local backend.

One WorkerServer serves one connection to a dispatcher, so when that connection dies the
attempts it started are the ones to stop.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Any

import structlog

from proofrace import schema
from proofrace.backends.base import Backend
from proofrace.core.cancel import CancelScope, outlast
from proofrace.core.model import (
    AttemptResult,
    CancelCause,
    CancelReason,
    ErrorKind,
    Format,
    Problem,
    SolveError,
)
from proofrace.core.progress import AttemptProgress
from proofrace.race.events import RaceObserver
from proofrace.wire import convert
from proofrace.wire.calls import rpc_method
from proofrace.wire.capabilities import LoginGuard
from proofrace.wire.connection import Connection
from proofrace.wire.promises import call_task
from proofrace.wire.remote import WorkerInfo, bounded_text, write_worker_info

_schema = schema.load()
_log = structlog.get_logger("proofrace.worker")
_REPORT_TIMEOUT_S = 5.0
_ID_CHARS = 64
# The dispatcher enforces the solve's deadline; the worker's own is a backstop just after it.
_DEADLINE_MARGIN_S = 1.0
_DISCONNECTED = CancelReason(CancelCause.DISCONNECTED, "the dispatcher's connection closed")
# An attempt's start is told to the dispatcher once it has run this long. Most attempts on a
# portfolio of small goals end sooner, and their answer tells all the start would have: a
# call, its answer and its finish fewer for the dispatcher to handle.
STARTED_REPORT_S = 0.05


class WorkerServer(_schema.Worker.Server):  # type: ignore[misc,name-defined]
    def __init__(
        self,
        backend: Backend,
        info: WorkerInfo,
        observer: RaceObserver,
        connection: Connection,
        on_undelivered: Callable[[str], None] = lambda _event: None,
        max_timeout_s: float = 3600.0,
    ) -> None:
        """`on_undelivered(event)`: an attempt event could not reach the dispatcher.
        `max_timeout_s`: no attempt runs longer, whatever the dispatcher asks."""
        self.connection = connection
        self._on_undelivered = on_undelivered
        self._max_timeout_s = max_timeout_s
        self._backend = backend
        self._info = info
        self._observer = observer
        self._running: dict[CancelScope, asyncio.Future[AttemptResult]] = {}
        self._scopes: dict[str, CancelScope] = {}  # by attempt id, for `stop`
        self._start_reports: dict[str, asyncio.TimerHandle] = {}  # by attempt id, until sent
        self._reports: set[asyncio.Task[None]] = set()
        self._closing: CancelReason | None = None

    def refuse_new(self, reason: CancelReason) -> None:
        """From now on a `run` ends at once, stopped for `reason` (the worker is draining):
        the dispatcher moves the attempt to another place."""
        self._closing = reason

    @rpc_method
    async def info(self, _context: Any, **kwargs: Any) -> None:
        write_worker_info(_context.results.init("info"), self._info)

    @rpc_method
    async def stop(self, attemptId: str, reason: Any, _context: Any, **kwargs: Any) -> None:
        """The dispatcher's reason for the cancellation of a `run` call that follows."""
        scope = self._scopes.get(str(attemptId))
        if scope is not None:
            scope.cancel(convert.read_reason(reason))

    @rpc_method
    async def run(self, attempt: Any, events: Any, _context: Any, **kwargs: Any) -> None:
        prover = bounded_text(str(attempt.prover), _ID_CHARS)
        solve_id = bounded_text(str(attempt.solveId), _ID_CHARS)
        attempt_id = bounded_text(str(attempt.attemptId), _ID_CHARS)
        problem = Problem(bytes(attempt.content), Format(str(attempt.format)))
        scope = CancelScope()
        if self._closing is not None:
            scope.cancel(self._closing)
        progress = AttemptProgress(
            prover, attempt_id, on_started=self._started(events, solve_id, attempt_id, prover)
        )
        # Whoever asks, no attempt outlives this worker's own maximum, in CPU (the backend's
        # rlimit) nor in wall-clock time (the deadline below; the dispatcher's comes first).
        requested = int(attempt.timeoutMs) / 1000
        timeout_s = min(requested or self._max_timeout_s, self._max_timeout_s)
        task = asyncio.ensure_future(
            self._backend.run(prover, problem, timeout_s=timeout_s, scope=scope, progress=progress)
        )
        deadline = asyncio.get_running_loop().call_later(
            timeout_s + _DEADLINE_MARGIN_S,
            scope.cancel,
            CancelReason(CancelCause.TIMEOUT, f"the worker's deadline of {timeout_s:g} s passed"),
        )
        task.add_done_callback(lambda _task: deadline.cancel())
        self._running[scope] = task
        self._scopes[attempt_id] = scope
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The dispatcher cancelled the call, or its connection died: preempt, and report
            # through `ended`, since the call's own answer can no longer travel.
            scope.cancel(
                _DISCONNECTED
                if self.connection.is_closed()
                else CancelReason(CancelCause.CLIENT, "the dispatcher cancelled the call")
            )
            result = await outlast(task)
            self._ended(events, solve_id, attempt_id, result)
            raise
        finally:
            self._running.pop(scope, None)
            self._scopes.pop(attempt_id, None)
            report = self._start_reports.pop(attempt_id, None)
            if report is not None:
                report.cancel()
        if self._closing is not None:
            # Draining: the worker exits once its reports are answered, so the answer travels
            # as `ended` too, whose delivery the drain awaits.
            self._ended(events, solve_id, attempt_id, result)
        else:
            self._observer.attempt_finished(solve_id, attempt_id, result)
        convert.write_attempt(_context.results.init("result"), result)

    def connection_lost(self) -> None:
        """Stop every attempt this dispatcher started."""
        self.stop_all(CancelReason(CancelCause.DISCONNECTED, "the dispatcher's connection closed"))

    def stop_all(self, reason: CancelReason) -> None:
        for scope in list(self._running):
            scope.cancel(reason)

    async def drain(self, reason: CancelReason) -> None:
        """Stop every attempt and return once each is reaped and its answer sent."""
        self.refuse_new(reason)
        tasks = list(self._running.values())
        self.stop_all(reason)
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._reports, return_exceptions=True)

    def _started(self, events: Any, solve_id: str, attempt_id: str, prover: str) -> Any:
        def notify(pid: int) -> None:
            self._observer.attempt_started(solve_id, attempt_id, prover, pid)
            self._start_reports[attempt_id] = asyncio.get_running_loop().call_later(
                STARTED_REPORT_S, tell, pid
            )

        def tell(pid: int) -> None:
            del self._start_reports[attempt_id]
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


class WorkerGateServer(_schema.Gate.Server):  # type: ignore[misc,name-defined]
    """A listening worker's bootstrap: `login` with the worker credential answers `worker`.
    With mutual TLS and no credential configured, the verified certificate is enough."""

    def __init__(
        self, credential: bytes, worker: Callable[[], WorkerServer], logins: LoginGuard
    ) -> None:
        self.connection = logins.connection
        self._credential = credential
        self._worker = worker
        self._logins = logins

    @rpc_method
    async def login(self, credential: str, _context: Any, **kwargs: Any) -> None:
        result = _context.results.init("result")
        accepted = (
            hmac.compare_digest(credential.encode(), self._credential)
            if self._credential
            else True  # no credential: gated by the client certificate alone
        )
        if accepted and not self._logins.blocked():
            result.worker = self._logins.granted("dispatcher", self._worker())
            return
        self._logins.failed()
        convert.write_error(
            result.init("refused"),
            SolveError(ErrorKind.UNAUTHENTICATED, "the credential was refused"),
        )
