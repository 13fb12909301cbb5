"""The dispatcher's side of remote workers: a worker capability used as a Backend.

Preemption crosses the network as `Worker.stop(attemptId, reason)`: the worker kills and
reaps the attempt's process group, and the `run` call answers with the stopped attempt, as it
answers any other. So an attempt costs one call (`run`, and the worker's `started` event
for an attempt still running after 50 ms), and an answer that crosses a stop on the wire is
still read. The `run` call is cancelled only
when the stop cannot be delivered (an older worker without `stop`), when it is not confirmed
in time, or when the dispatcher itself tears down; the worker then reports through the
`ended` event instead (as a draining worker does for every attempt it ends, so that its exit
waits for the answer to be taken). The dispatcher's latency for the attempt is trigger to
that answer: the whole cross-host path. The worker measures its own part (stop received to
reaped) and sends it along.
"""

from __future__ import annotations

import asyncio
import ssl
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
    ErrorKind,
    Problem,
    ProverInfo,
    SolveError,
    Stop,
)
from proofrace.core.progress import AttemptProgress
from proofrace.wire import convert
from proofrace.wire.calls import rpc_method
from proofrace.wire.frames import open_stream
from proofrace.wire.promises import call_task, first_of
from proofrace.wire.reconnect import reconnecting

_schema = schema.load()
_log = structlog.get_logger("proofrace.workers")

# How long a preempted remote attempt may take to confirm it was reaped, beyond the grace
# period; past it the worker is presumed lost.
_CONFIRM_S = 5.0


# Bounds on what a worker's own words may carry into the dispatcher: its offer, and the text
# of its answers (which reach logs and clients).
_MAX_OFFERED = 256
_NAME_CHARS = 64
_STATUS_CHARS = 256
_MESSAGE_CHARS = 1024


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    provers: tuple[ProverInfo, ...]
    slots: int


@dataclass(frozen=True)
class WorkerLimits:
    max_workers: int = 64  # registrations at once
    max_slots: int = 64  # a worker's slots are clamped to this
    output_tail_bytes: int = 16 * 1024  # of each answer's output tail


def read_worker_info(reader: Any) -> WorkerInfo:
    """A worker's offer, read only as far as the dispatcher will ever look at it."""
    provers = reader.provers
    offered = [provers[i] for i in range(min(len(provers), _MAX_OFFERED))]
    return WorkerInfo(
        bounded_text(str(reader.name), _NAME_CHARS),
        tuple(convert.read_provers(offered)),
        int(reader.slots),
    )


def bounded_text(text: str, limit: int) -> str:
    """Printable and at most `limit` characters: safe for a log line or a message."""
    if len(text) <= limit and text.isprintable():
        return text
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + "..." if len(text) > limit else cleaned


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
        self,
        capability: Any,
        info: WorkerInfo,
        grace_s: float,
        confirm_s: float = _CONFIRM_S,
        tail_bytes: int = 16 * 1024,
    ) -> None:
        """`confirm_s`: how long past the grace period a stop may take to be confirmed.
        `info.provers` must already be the dispatcher's own entries (see WorkerDirectory)."""
        self._worker = capability
        self.info = info
        self._grace_s = grace_s
        self._confirm_s = confirm_s
        self._tail_bytes = tail_bytes
        self._telling: set[asyncio.Task[None]] = set()

    def _tell_stop(self, attempt_id: str, reason: CancelReason, call: asyncio.Future[Any]) -> None:
        """`Worker.stop`: the worker stops the attempt, with the real reason in its metrics and
        logs, and `run` answers. If the stop cannot be delivered (a worker without `stop`, an
        older one), the call is cancelled instead, which such a worker files under `client`."""
        request = self._worker.stop_request()
        request.attemptId = attempt_id
        convert.write_reason(request.init("reason"), reason)
        sent = call_task(request.send())  # leaves now, in the trigger's own call stack

        async def deliver() -> None:
            try:
                await asyncio.wait_for(sent, self._confirm_s)
            except Exception:
                call.cancel()

        task = asyncio.ensure_future(deliver())
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    def catalog(self) -> list[ProverInfo]:
        return list(self.info.provers)

    def _own(self, prover: str, result: AttemptResult) -> AttemptResult:
        """The worker's answer, under the name the dispatcher asked for and with its text
        bounded: nothing in the reply decides which prover answered."""
        return replace(
            result,
            prover=prover,
            worker=self.info.name,
            status=bounded_text(result.status, _STATUS_CHARS),
            message=bounded_text(result.message, _MESSAGE_CHARS),
            output_tail=result.output_tail[-self._tail_bytes :],
        )

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

        # Preempt: the worker is told to stop, and `run` answers with the stopped attempt. A
        # stop not answered within the grace period and the confirmation time cancels the call.
        # Done in the scope's callback, so no second task or wait set is needed per attempt.
        overdue: list[asyncio.TimerHandle] = []
        unconfirmed = False

        def give_up() -> None:
            nonlocal unconfirmed
            unconfirmed = True
            call.cancel()

        def preempt(reason: CancelReason) -> None:
            progress.stopping()
            self._tell_stop(progress.attempt_id, reason, call)
            overdue.append(loop.call_later(self._grace_s + self._confirm_s, give_up))

        remove = scope.on_cancel(preempt)
        # Waits for the call however it ends, without raising its error: `_finished` reads
        # that from `call`. (One future and one callback: `asyncio.wait` makes several.)
        answered: asyncio.Future[None] = loop.create_future()

        def on_answer(_call: asyncio.Future[Any]) -> None:
            if not answered.done():
                answered.set_result(None)

        call.add_done_callback(on_answer)
        try:
            await answered
        except asyncio.CancelledError:
            call.cancel()  # torn down from above: the worker stops the attempt
            raise
        finally:
            remove()
            for timer in overdue:
                timer.cancel()
        if not call.cancelled():
            return self._as_stopped(self._finished(prover, call, ended, started_ns), scope)
        try:
            if unconfirmed and not ended.done():
                raise TimeoutError
            # The stop could not be delivered (an older worker): its answer comes as `ended`.
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
                worker=self.info.name,
            )
        return self._as_stopped(self._own(prover, remote), scope)

    def _as_stopped(self, remote: AttemptResult, scope: CancelScope) -> AttemptResult:
        """A stopped attempt as the worker answered it, under the dispatcher's reason and with
        its latency (trigger to this answer); the worker's own part goes in the message."""
        if remote.stop is None or scope.reason is None:
            return remote  # not stopped, or it ended on its own before the stop reached it
        trigger = scope.called_ns or time.monotonic_ns()
        latency = time.monotonic_ns() - trigger
        stop = Stop(scope.reason, latency_ns=latency, escalated=remote.stop.escalated)
        own = remote.stop.latency_ns // 1000
        return replace(
            remote,
            outcome=stopped_outcome(stop),
            stop=stop,
            message=f"on worker {self.info.name}; its own stop took {own} us",
        )

    def _finished(
        self,
        prover: str,
        call: asyncio.Future[Any],
        ended: asyncio.Future[AttemptResult],
        started_ns: int,
    ) -> AttemptResult:
        if ended.done():  # the same result, already read from the `ended` event
            return self._own(prover, ended.result())
        try:
            response = call.result()
        except (capnp.KjException, OSError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            return AttemptResult(
                prover,
                AttemptOutcome.SYSTEM_ERROR,
                message=f"worker {self.info.name} lost: {first_line[:200]}",
                # As long as it ran before the loss was noticed, not zero.
                elapsed_ns=time.monotonic_ns() - started_ns,
                worker=self.info.name,
            )
        return self._own(prover, convert.read_attempt(response.result))


class RegistrationServer(_schema.Registration.Server):  # type: ignore[misc,name-defined]
    """Held by the worker. When it is released, the worker leaves the pool: its attempts in
    flight run on to their end, and nothing new goes there. Released on its own (a drain: the
    connection lives on) or with the connection (the worker is lost)."""

    def __init__(
        self, place: Place, on_leave: Callable[[Place, Callable[[], bool]], None],
        planned: Callable[[], bool],
    ) -> None:  # fmt: skip
        weakref.finalize(self, on_leave, place, planned)


# A worker's comings and goings, for the metrics: (name, "registered" | "drained" | "lost").
WorkerChange = Callable[[str, str], None]


@dataclass(frozen=True)
class WorkerDialing:
    """How the dispatcher reaches the workers it dials: the worker credential it presents at
    their Gate (None: the worker asks for none), and TLS (None: plain TCP)."""

    credential: str | None = None
    tls: ssl.SSLContext | None = None


class WorkerDirectory:
    """Registers workers in the pool and takes them out again, with logs and a gauge.

    A worker's offer is checked against the dispatcher's own registry: only provers it already
    knows are taken, under its own entries (formats, default), so an offer can neither add a
    catalogue entry nor make anything a default. Its slots are clamped and registrations capped.
    """

    def __init__(
        self,
        pool: Pool,
        grace_s: float,
        on_count: Callable[[int], None],
        known: list[ProverInfo] | None = None,
        limits: WorkerLimits | None = None,
        on_change: WorkerChange | None = None,
    ) -> None:
        self._pool = pool
        self._grace_s = grace_s
        self._on_count = on_count
        self._on_change = on_change or (lambda _name, _change: None)
        self._known = {info.name: info for info in known or []}
        self._limits = limits or WorkerLimits()
        self._count = 0

    def register(
        self, capability: Any, info: WorkerInfo, planned: Callable[[], bool] = lambda: False
    ) -> RegistrationServer | SolveError:
        """A registration, or the reason the offer is refused. `planned()`, asked when the
        worker leaves: whether it left on purpose (a drain)."""
        if self._count >= self._limits.max_workers:
            _log.warning("worker.refused", name=info.name, why="registrations at their limit")
            return SolveError(
                ErrorKind.OVERLOADED,
                f"{self._count} workers registered, this dispatcher's limit; retry later",
            )
        offered = {p.name for p in info.provers if p.available}
        provers = tuple(
            replace(self._known[name], available=True)
            for name in sorted(offered)
            if name in self._known
        )
        if not provers:
            _log.warning("worker.refused", name=info.name, why="no known prover offered")
            return SolveError(
                ErrorKind.INVALID_REQUEST, "the worker offers no prover this dispatcher knows"
            )
        slots = max(1, min(info.slots, self._limits.max_slots))
        accepted = WorkerInfo(info.name, provers, slots)
        place = Place(
            name=f"worker {info.name}",
            backend=RemoteWorker(
                capability, accepted, self._grace_s, tail_bytes=self._limits.output_tail_bytes
            ),
            slots=slots,
        )
        self._pool.add(place)
        self._count += 1
        self._on_count(+1)
        self._on_change(info.name, "registered")
        _log.info(
            "worker.registered",
            name=info.name,
            slots=slots,
            provers=[p.name for p in provers],
            ignored=len(offered) - len(provers),  # offered names it does not know: counted only
        )
        return RegistrationServer(place, self._leave, planned)

    def _leave(self, place: Place, planned: Callable[[], bool]) -> None:
        self._pool.remove(place)
        self._count -= 1
        self._on_count(-1)
        name = place.name.removeprefix("worker ")
        if planned():
            self._on_change(name, "drained")
            _log.info("worker.drained", name=name)
        else:
            self._on_change(name, "lost")
            _log.warning("worker.lost", name=name)

    async def dial(
        self, host: str, port: int, stop: asyncio.Event, dialing: WorkerDialing | None = None
    ) -> None:
        """Keep a worker listed in the configuration connected, reconnecting as needed."""
        dialing = dialing or WorkerDialing()

        async def session() -> None:
            stream = await _connect(host, port, dialing.tls)
            client = capnp.TwoPartyClient(stream)
            try:
                worker = await _worker_of(client.bootstrap(), dialing.credential)
                info = read_worker_info((await worker.info()).info)
                registration = self.register(worker, info, planned=stop.is_set)
                if isinstance(registration, SolveError):
                    raise PermissionError(registration.message)
                await first_of(client.on_disconnect(), stop)
                del registration, worker  # the worker leaves the pool
            finally:
                client.close()

        def unreachable(error: Exception) -> None:
            _log.info("worker.unreachable", address=f"{host}:{port}", error=str(error)[:120])

        await reconnecting(
            session, stop, expected=(OSError, capnp.KjException), on_failure=unreachable
        )


async def _connect(host: str, port: int, tls: ssl.SSLContext | None) -> Any:
    loop = asyncio.get_running_loop()
    if tls is None:
        return await open_stream(lambda made: loop.create_connection(made, host, port))
    return await open_stream(
        lambda made: loop.create_connection(made, host, port, ssl=tls, server_hostname=host)
    )


async def _worker_of(bootstrap: Any, credential: str | None) -> Any:
    """The Worker capability: straight from the bootstrap of a worker that asks for no login,
    else from its Gate, which answers `worker` to the worker credential."""
    if credential is None:
        return bootstrap.cast_as(_schema.Worker)
    result = (await bootstrap.cast_as(_schema.Gate).login(credential)).result
    if result.which() != "worker":
        raise PermissionError("the worker refused the worker credential")
    return result.worker
