"""The dispatcher's side of remote workers: a worker capability used as a Backend.

Preemption crosses the network by cancelling the in-flight `Worker.run` call. The worker's
coroutine receives the cancellation, kills and reaps the process group, and reports back on
the `AttemptEvents` capability passed with the call. The dispatcher's latency for the attempt
is therefore trigger to that report: the whole cross-host path. The worker measures its own
part (cancellation received to reaped) and sends it along.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import capnp
import structlog

from proofrace import schema
from proofrace.backends.base import not_started, stopped_outcome
from proofrace.backends.pool import Place, Pool
from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    AttemptOutcome,
    AttemptResult,
    CancelReason,
    Problem,
    ProverInfo,
    Stop,
)
from proofrace.core.progress import AttemptProgress
from proofrace.wire import convert
from proofrace.wire.calls import rpc_method
from proofrace.wire.promises import call_task, first_of
from proofrace.wire.reconnect import reconnecting

_schema = schema.load()
_log = structlog.get_logger("proofrace.workers")

# How long a preempted remote attempt may take to confirm it was reaped, beyond the grace
# period; past it the worker is presumed lost.
_CONFIRM_S = 5.0


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    provers: tuple[ProverInfo, ...]
    slots: int


def read_worker_info(reader: Any) -> WorkerInfo:
    return WorkerInfo(str(reader.name), tuple(convert.read_provers(reader.provers)), reader.slots)


def write_worker_info(builder: Any, info: WorkerInfo) -> None:
    builder.name = info.name
    builder.slots = info.slots
    convert.write_provers(builder.init("provers", len(info.provers)), list(info.provers))


class AttemptEventsServer(_schema.AttemptEvents.Server):  # type: ignore[misc,name-defined]
    def __init__(self, progress: AttemptProgress, ended: asyncio.Future[AttemptResult]) -> None:
        self._progress = progress
        self._ended = ended

    @property
    def connection(self) -> None:
        """Events arrive on the worker's connection; its calls are not counted here."""
        return None

    @rpc_method
    async def started(self, pid: int, _context: Any, **kwargs: Any) -> None:
        self._progress.started(pid)

    @rpc_method
    async def ended(self, result: Any, _context: Any, **kwargs: Any) -> None:
        if not self._ended.done():
            self._ended.set_result(convert.read_attempt(result))


class RemoteWorker:
    """A Backend whose attempts run on another machine."""

    def __init__(
        self, capability: Any, info: WorkerInfo, grace_s: float, confirm_s: float = _CONFIRM_S
    ) -> None:
        """`confirm_s`: how long past the grace period a stop may take to be confirmed."""
        self._worker = capability
        self.info = info
        self._grace_s = grace_s
        self._confirm_s = confirm_s

    def catalog(self) -> list[ProverInfo]:
        return list(self.info.provers)

    async def run(
        self,
        prover: str,
        problem: Problem,
        *,
        timeout_s: float,
        scope: CancelScope,
        progress: AttemptProgress,
    ) -> AttemptResult:
        if scope.cancel_called:
            return not_started(prover, scope)
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[AttemptResult] = loop.create_future()
        request = self._worker.run_request()
        attempt = request.init("attempt")
        attempt.prover = prover
        attempt.content = problem.content
        attempt.format = problem.format.value
        attempt.timeoutMs = min(int(timeout_s * 1000), 2**32 - 1)
        attempt.solveId, _, _ = progress.attempt_id.rpartition(".")
        attempt.attemptId = progress.attempt_id
        request.events = AttemptEventsServer(progress, ended)
        started_ns = time.monotonic_ns()
        call = call_task(request.send())

        # Preempt: cancelling the call is what reaches the worker's coroutine. Done in the
        # scope's callback, so no second task or wait set is needed per attempt.
        def preempt(_reason: CancelReason) -> None:
            call.cancel()

        remove = scope.on_cancel(preempt)
        try:
            await call
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # torn down from above: awaiting `call` cancelled it, the worker stops
        except Exception:
            pass  # read by _finished
        finally:
            remove()
        if not call.cancelled():
            return self._finished(prover, call, ended)
        progress.stopping()
        assert scope.reason is not None
        trigger = scope.called_ns or time.monotonic_ns()
        try:
            remote = await asyncio.wait_for(ended, self._grace_s + self._confirm_s)
        except TimeoutError:
            _log.warning(
                "worker.stop_unconfirmed",
                worker=self.info.name,
                attempt=progress.attempt_id,
                waited_s=self._grace_s + self._confirm_s,
            )
            return AttemptResult(
                prover,
                AttemptOutcome.SYSTEM_ERROR,
                message=f"worker {self.info.name} lost: it never confirmed the stop",
                elapsed_ns=time.monotonic_ns() - started_ns,
            )
        if remote.stop is None:
            return remote  # it ended on its own before the cancellation reached it
        now = time.monotonic_ns()
        stop = Stop(scope.reason, latency_ns=now - trigger, escalated=remote.stop.escalated)
        own = remote.stop.latency_ns // 1000
        return replace(
            remote,
            outcome=stopped_outcome(stop),
            stop=stop,
            message=f"on worker {self.info.name}; its own stop took {own} us",
        )

    def _finished(
        self, prover: str, call: asyncio.Future[Any], ended: asyncio.Future[AttemptResult]
    ) -> AttemptResult:
        if ended.done():
            return ended.result()  # the same result, already read from the `ended` event
        try:
            response = call.result()
        except (capnp.KjException, OSError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            return AttemptResult(
                prover,
                AttemptOutcome.SYSTEM_ERROR,
                message=f"worker {self.info.name} lost: {first_line[:200]}",
            )
        return convert.read_attempt(response.result)


class RegistrationServer(_schema.Registration.Server):  # type: ignore[misc,name-defined]
    """Held by the worker. When it is released (drain, or the connection closed), the worker
    leaves the pool; its attempts still in flight then fail as `worker lost`."""

    def __init__(self, place: Place, on_leave: Callable[[Place], None]) -> None:
        weakref.finalize(self, on_leave, place)


class WorkerDirectory:
    """Registers workers in the pool and takes them out again, with logs and a gauge."""

    def __init__(self, pool: Pool, grace_s: float, on_count: Callable[[int], None]) -> None:
        self._pool = pool
        self._grace_s = grace_s
        self._on_count = on_count

    def register(self, capability: Any, info: WorkerInfo) -> RegistrationServer:
        place = Place(
            name=f"worker {info.name}",
            backend=RemoteWorker(capability, info, self._grace_s),
            slots=info.slots,
        )
        self._pool.add(place)
        self._on_count(+1)
        _log.info(
            "worker.registered",
            name=info.name,
            slots=info.slots,
            provers=[p.name for p in info.provers if p.available],
        )
        return RegistrationServer(place, self._leave)

    def _leave(self, place: Place) -> None:
        self._pool.remove(place)
        self._on_count(-1)
        _log.warning("worker.lost", name=place.name.removeprefix("worker "))

    async def dial(self, host: str, port: int, stop: asyncio.Event) -> None:
        """Keep a worker listed in the configuration connected, reconnecting as needed."""

        async def session() -> None:
            stream = await capnp.AsyncIoStream.create_connection(host, port)
            client = capnp.TwoPartyClient(stream)
            try:
                worker = client.bootstrap().cast_as(_schema.Worker)
                info = read_worker_info((await worker.info()).info)
                registration = self.register(worker, info)
                await first_of(client.on_disconnect(), stop)
                del registration, worker  # the worker leaves the pool
            finally:
                client.close()

        def unreachable(error: Exception) -> None:
            _log.info("worker.unreachable", address=f"{host}:{port}", error=str(error)[:120])

        await reconnecting(
            session, stop, expected=(OSError, capnp.KjException), on_failure=unreachable
        )
