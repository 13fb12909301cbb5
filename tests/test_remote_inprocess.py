"""A remote worker in process: the dispatcher's RemoteWorker and the worker's WorkerServer,
both real, over a socket pair, with a fake backend behind the worker. Preemption across the
wire, an answer passed through, and a worker lost in the middle of an attempt."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import capnp
from structlog.testing import capture_logs

from proofrace import schema
from proofrace.backends.pool import Pool
from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    AttemptOutcome,
    AttemptResult,
    CancelCause,
    CancelReason,
    Format,
    Problem,
    Strategy,
    Verdict,
)
from proofrace.core.progress import AttemptProgress
from proofrace.observe.metrics import Metrics
from proofrace.observe.telemetry import Telemetry
from proofrace.race.plan import Plan
from proofrace.race.race import Race
from proofrace.wire.calls import rpc_method
from proofrace.wire.connection import Connection
from proofrace.wire.promises import call_task
from proofrace.wire.remote import RemoteWorker, WorkerDirectory, WorkerInfo
from proofrace.wire.worker_server import WorkerServer

from fakes import FakeBackend, Noted, RecordingObserver, Script, proved

PROBLEM = Problem(b"(check-sat)", Format.SMTLIB2)


@dataclass
class Link:
    remote: RemoteWorker  # the dispatcher's backend
    worker: WorkerServer
    worker_side: Connection
    observer: RecordingObserver  # the worker's own telemetry
    close: Any  # cut the link from the worker's side
    capability: Any  # the dispatcher's reference to the worker
    undelivered: Noted[str]  # events the worker could not deliver


@contextlib.asynccontextmanager
async def linked(
    backend: FakeBackend, worker_class: type[WorkerServer] = WorkerServer
) -> AsyncIterator[Link]:
    async with capnp.kj_loop():
        dispatcher_sock, worker_sock = socket.socketpair()
        worker_stream = await capnp.AsyncIoStream.create_unix_connection(sock=worker_sock)
        dispatcher_stream = await capnp.AsyncIoStream.create_unix_connection(sock=dispatcher_sock)
        info = WorkerInfo("w1", tuple(backend.catalog()), slots=4)
        connection = Connection(worker_sock, "test")
        observer = RecordingObserver()
        undelivered: Noted[str] = Noted()
        worker = worker_class(backend, info, observer, connection, undelivered.append)
        connection.on_close(worker.connection_lost)
        server = capnp.TwoPartyServer(worker_stream, bootstrap=worker)
        client = capnp.TwoPartyClient(dispatcher_stream)
        capability = client.bootstrap().cast_as(schema.load().Worker)

        def close() -> None:
            connection.mark_closed()
            worker_stream.close()

        try:
            remote = RemoteWorker(capability, info, grace_s=0.05)
            yield Link(remote, worker, connection, observer, close, capability, undelivered)
        finally:
            del capability
            client.close()
            server.close()
            worker_stream.close()
            dispatcher_stream.close()


def run(link: Link, prover: str, scope: CancelScope) -> asyncio.Future[AttemptResult]:
    progress = AttemptProgress(prover, "s1.0")
    return asyncio.ensure_future(
        link.remote.run(prover, PROBLEM, timeout_s=9, scope=scope, progress=progress)
    )


async def test_a_remote_answer_comes_back_whole() -> None:
    async with linked(FakeBackend({"z3": Script(proved("z3"))})) as link:
        result = await run(link, "z3", CancelScope())
    assert (result.outcome, result.answer.value, result.status) == (
        AttemptOutcome.PROVED,
        "proved",
        "unsat",
    )
    assert result.exit.code == 0


PREEMPTED = CancelReason(CancelCause.PREEMPTED, "preempted by z3")


async def preempted(
    worker_class: type[WorkerServer] = WorkerServer,
) -> tuple[FakeBackend, AttemptResult]:
    """A cvc5 attempt on the worker, preempted by the dispatcher once it runs."""
    backend = FakeBackend({"cvc5": Script()})
    async with linked(backend, worker_class) as link:
        scope = CancelScope()
        running = run(link, "cvc5", scope)
        await backend.attempt_started.wait()
        scope.cancel(PREEMPTED)
        return backend, await running


async def test_preemption_crosses_the_wire_and_the_worker_reaps_first() -> None:
    backend, result = await preempted()
    assert result.outcome is AttemptOutcome.CANCELLED and result.stop is not None
    assert result.stop.reason == PREEMPTED  # the dispatcher's reason, not the worker's view
    # The worker was told the real reason (Worker.stop), and its call answered.
    assert backend.stops["cvc5"] == PREEMPTED
    assert result.message.startswith("on worker w1; its own stop took")
    assert not backend.running


async def test_an_answer_that_crosses_the_stop_on_the_wire_is_still_read() -> None:
    release = asyncio.Event()
    backend = FakeBackend({"z3": Script(proved("z3"), release=release)})
    async with linked(backend) as link:
        scope = CancelScope()
        running = run(link, "z3", scope)
        await backend.attempt_started.wait()
        release.set()  # z3 answers...
        await backend.attempt_returned.wait()
        scope.cancel(CancelReason(CancelCause.CLIENT, "too late"))  # ...as the stop leaves
        result = await running
    # The worker's own answer, read from its call: not a worker lost for want of a report.
    assert result.outcome is AttemptOutcome.PROVED


class OlderWorker(WorkerServer):
    """A worker from before `Worker.stop`: only a cancelled call stops its attempt."""

    @rpc_method
    async def stop(self, attemptId: str, reason: Any, _context: Any, **kwargs: Any) -> None:
        raise RuntimeError("no Worker.stop in this version")


async def test_a_worker_without_stop_is_stopped_by_cancelling_its_call() -> None:
    backend, result = await preempted(OlderWorker)
    assert result.outcome is AttemptOutcome.CANCELLED and result.stop is not None
    assert result.stop.reason == PREEMPTED  # the dispatcher's reason; the answer, from `ended`
    assert backend.stops["cvc5"].cause is CancelCause.CLIENT  # all such a worker learns
    assert not backend.running


async def test_an_attempt_cancelled_before_it_is_sent_never_reaches_the_worker() -> None:
    backend = FakeBackend({"z3": Script()})
    async with linked(backend) as link:
        scope = CancelScope()
        scope.cancel(CancelReason(CancelCause.CLIENT, "early"))
        result = await run(link, "z3", scope)
    assert result.outcome is AttemptOutcome.CANCELLED
    assert backend.started == []


async def test_a_worker_lost_mid_attempt_is_a_system_error_and_leaves_no_attempt_in_flight() -> (
    None
):
    backend = FakeBackend({"z3": Script(), "cvc5": Script()})
    metrics = Metrics()
    async with linked(backend) as link:
        telemetry = CountingTelemetry(metrics)
        plan = Plan(PROBLEM, ("z3", "cvc5"), Strategy.FIRST_WINS, 2, 60.0)
        running = asyncio.ensure_future(Race("s1", plan, link.remote, telemetry).run())
        await telemetry.started(2)
        with capture_logs() as logs:
            link.close()
            outcome = await running
    assert outcome.verdict is Verdict.ERROR
    for attempt in outcome.attempts:
        assert attempt.outcome is AttemptOutcome.SYSTEM_ERROR
        assert attempt.message.startswith("worker w1 lost")
    # The worker stopped its attempts when the dispatcher's connection went.
    assert {r.cause for r in backend.stops.values()} == {CancelCause.DISCONNECTED}
    assert metrics.registry.get_sample_value("proofrace_attempts_in_flight") == 0
    dispatcher_side = [e for e in logs if e.get("solve_id") == "s1" and "prover" in e]
    assert {e["event"] for e in dispatcher_side} == {"attempt.ended"}  # nothing reaped here


class CountingTelemetry(Telemetry):
    """The dispatcher's telemetry, which also tells when `started` events crossed the wire."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(metrics)
        self._starts = 0
        self._changed = asyncio.Event()

    def attempt_started(self, solve_id: str, attempt: str, prover: str, pid: int) -> None:
        super().attempt_started(solve_id, attempt, prover, pid)
        self._starts += 1
        self._changed.set()

    async def started(self, count: int) -> None:
        while self._starts < count:
            self._changed.clear()
            await self._changed.wait()


class StartsSeen(schema.load().AttemptEvents.Server):  # type: ignore[misc]
    """A dispatcher's end of an attempt's events that notes the starts it is told of."""

    connection = None

    def __init__(self) -> None:
        self.pids: Noted[int] = Noted()

    @rpc_method
    async def started(self, pid: int, _context: Any, **kwargs: Any) -> None:
        self.pids.append(pid)

    @rpc_method
    async def ended(self, result: Any, _context: Any, **kwargs: Any) -> None:
        pass


def run_request(link: Link, prover: str, attempt_id: str, events: Any) -> Any:
    request = link.capability.run_request()
    attempt = request.init("attempt")
    attempt.prover, attempt.content, attempt.format = prover, b"(check-sat)", "smtlib2"
    attempt.solveId, attempt.attemptId = attempt_id.partition(".")[0], attempt_id
    request.events = events
    return request


async def test_an_attempt_that_ends_at_once_answers_without_a_start_event() -> None:
    release = asyncio.Event()
    backend = FakeBackend(
        {"z3": Script(proved("z3")), "cvc5": Script(proved("cvc5"), release=release)}
    )
    async with linked(backend) as link:
        quick, slow = StartsSeen(), StartsSeen()
        answered = await call_task(run_request(link, "z3", "s1.0", quick).send())
        assert answered.result.outcome == "proved"
        # A longer attempt is told of once it has run a moment, while it still runs.
        running = call_task(run_request(link, "cvc5", "s2.0", slow).send())
        await slow.pids.reaching(1)
        assert not running.done()
        release.set()
        await running
    assert quick.pids == []  # the answer said all a start would have
    # The worker's own log and metrics have both.
    starts = [event for event in link.observer.events if event[0] == "attempt_started"]
    assert starts == [("attempt_started", "z3"), ("attempt_started", "cvc5")]


class BrokenEvents(schema.load().AttemptEvents.Server):  # type: ignore[misc]
    """A dispatcher whose end of the attempt's events fails."""

    connection = None

    @rpc_method
    async def started(self, pid: int, _context: Any, **kwargs: Any) -> None:
        raise RuntimeError("events broken")

    @rpc_method
    async def ended(self, result: Any, _context: Any, **kwargs: Any) -> None:
        raise RuntimeError("events broken")


async def test_events_the_worker_cannot_deliver_are_logged_with_their_cause_and_counted() -> None:
    backend = FakeBackend({"z3": Script()})
    async with linked(backend) as link:
        request = run_request(link, "z3", "s1.0", BrokenEvents())
        with capture_logs() as logs:
            call = call_task(request.send())
            await link.undelivered.reaching(1)  # its start, told once it has run a moment
            call.cancel()  # the call's answer can no longer travel: the worker sends `ended`
            await link.undelivered.reaching(2)
            await link.worker.drain(CancelReason(CancelCause.SHUTDOWN))
    assert sorted(link.undelivered) == ["ended", "started"]
    failures = [e for e in logs if e["event"] == "worker.event_undelivered"]
    assert sorted(e["report"] for e in failures) == ["ended", "started"]
    assert all(e["attempt"] == "s1.0" and "internal server error" in e["error"] for e in failures)


async def test_a_stop_the_worker_never_confirms_makes_the_worker_lost_and_is_logged() -> None:
    release = asyncio.Event()
    backend = FakeBackend({"deaf": Script(release=release, deaf=True)})
    async with linked(backend) as link:
        impatient = RemoteWorker(link.capability, link.remote.info, grace_s=0.01, confirm_s=0.01)
        scope = CancelScope()
        progress = AttemptProgress("deaf", "s1.0")
        running = asyncio.ensure_future(
            impatient.run("deaf", PROBLEM, timeout_s=9, scope=scope, progress=progress)
        )
        await backend.attempt_started.wait()
        with capture_logs() as logs:
            scope.cancel(CancelReason(CancelCause.CLIENT, "stop"))
            result = await running
        release.set()  # the worker's attempt ends at last, before the link goes
        await link.worker.drain(CancelReason(CancelCause.SHUTDOWN))
    assert result.outcome is AttemptOutcome.SYSTEM_ERROR
    assert result.message == "worker w1 lost: it never confirmed the stop"
    assert [e["event"] for e in logs] == ["worker.stop_unconfirmed"]


class NotAWorker(schema.load().AttemptEvents.Server):  # type: ignore[misc]
    """A peer that answers, but is no worker: `Worker.info` fails on it."""


async def test_a_worker_address_that_fails_is_let_go_before_the_next_try() -> None:
    async with capnp.kj_loop():
        connections = 0
        first_closed = asyncio.Event()
        closed_while_open: list[int] = []

        async def serve(stream: Any) -> None:
            nonlocal connections
            connections += 1
            server = capnp.TwoPartyServer(stream, bootstrap=NotAWorker())
            await server.on_disconnect()
            closed_while_open.append(connections)
            first_closed.set()

        listening = await capnp.AsyncIoStream.create_server(serve, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        directory = WorkerDirectory(Pool(), grace_s=0.01, on_count=lambda _n: None)
        stop = asyncio.Event()
        with capture_logs() as logs:
            dialing = asyncio.ensure_future(directory.dial("127.0.0.1", port, stop))
            await first_closed.wait()
            stop.set()
            await dialing
        listening.close()
    # The dialer closed its connection after the failed `info`, not when it dialled again.
    assert closed_while_open[0] == 1
    assert [e["event"] for e in logs] == ["worker.unreachable"]
