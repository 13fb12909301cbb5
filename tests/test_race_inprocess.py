"""The race layer in process, over a fake backend: Race, Pool and RaceService, with every way
a race ends. No process, no socket: these run in milliseconds."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from proofrace.backends.pool import Place, Pool
from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    AttemptOutcome,
    CancelCause,
    CancelReason,
    ErrorKind,
    Format,
    Problem,
    SolveRequest,
    SolveState,
    Strategy,
    Verdict,
)
from proofrace.core.progress import AttemptProgress
from proofrace.observe.metrics import Metrics
from proofrace.observe.telemetry import Telemetry
from proofrace.race.plan import Plan, RaceLimits
from proofrace.race.race import Race
from proofrace.race.service import RaceService

from fakes import FakeBackend, RecordingObserver, Script, failed, proved, refuted, until

PROBLEM = Problem(b"(check-sat)", Format.SMTLIB2)


def race_of(
    backend: FakeBackend,
    observer: object | None = None,
    *,
    strategy: Strategy = Strategy.FIRST_WINS,
    quorum: int = 2,
    timeout_s: float = 60.0,
) -> Race:
    plan = Plan(PROBLEM, tuple(backend.scripts), strategy, quorum, timeout_s)
    return Race("s1", plan, backend, observer or RecordingObserver())  # type: ignore[arg-type]


async def started(backend: FakeBackend, count: int) -> None:
    """Until `count` attempts have started (each start sets the event; yield between)."""
    while len(backend.started) < count:
        backend.attempt_started.clear()
        await backend.attempt_started.wait()


# --- Race ------------------------------------------------------------------------------


async def test_the_first_answer_wins_and_the_others_are_preempted_by_it() -> None:
    backend = FakeBackend({"z3": Script(proved("z3")), "cvc5": Script()})
    observer = RecordingObserver()
    outcome = await race_of(backend, observer).run()
    assert (outcome.verdict, outcome.winner) == (Verdict.PROVED, "z3")
    z3, cvc5 = outcome.attempts
    assert z3.outcome is AttemptOutcome.PROVED and z3.stop is None
    assert cvc5.outcome is AttemptOutcome.CANCELLED and cvc5.stop is not None
    assert cvc5.stop.reason == CancelReason(CancelCause.PREEMPTED, "preempted by z3")
    assert not backend.running  # nothing outlives the race
    assert observer.names().count("winner") == 1
    assert observer.names()[-1] == "solve_finished"


async def test_a_waiting_caller_has_the_outcome_before_the_race_has_tidied_up() -> None:
    # The outcome is settled as the last attempt ends and handed to each result() waiting;
    # the race's own task finishes after (its task group's exit takes two more loop turns).
    backend = FakeBackend({"z3": Script(proved("z3")), "cvc5": Script()})
    race = race_of(backend)
    finished: list[str] = []
    running = asyncio.ensure_future(race.run())
    waiting = asyncio.ensure_future(race.outcome())
    running.add_done_callback(lambda _task: finished.append("run"))
    waiting.add_done_callback(lambda _task: finished.append("result"))
    outcome = await waiting
    assert outcome == await running
    assert finished == ["result", "run"]


async def test_a_caller_giving_up_on_the_outcome_leaves_the_race_running() -> None:
    backend = FakeBackend({"cvc5": Script()})
    race = race_of(backend)
    running = asyncio.ensure_future(race.run())
    waiting = asyncio.ensure_future(race.outcome())
    await started(backend, 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not running.done() and backend.running == {"cvc5"}
    race.cancel(CancelReason(CancelCause.CLIENT, "enough"))
    assert (await running).verdict is Verdict.CANCELLED
    assert (await race.outcome()).verdict is Verdict.CANCELLED  # after the end: at once


@pytest.mark.parametrize(
    "cause",
    [CancelCause.CLIENT, CancelCause.TOKEN_DROPPED, CancelCause.DISCONNECTED, CancelCause.SHUTDOWN],
)
async def test_a_cancel_from_outside_reaches_every_attempt_with_its_reason(
    cause: CancelCause,
) -> None:
    backend = FakeBackend({"z3": Script(), "cvc5": Script()})
    race = race_of(backend)
    running = asyncio.ensure_future(race.run())
    await started(backend, 2)
    assert race.status().state is SolveState.RUNNING
    reason = CancelReason(cause, "why")
    assert race.cancel(reason)
    assert race.status().state is SolveState.CANCELLING
    assert not race.cancel(CancelReason(CancelCause.CLIENT, "second"))  # the first cause wins
    outcome = await running
    assert outcome.verdict is Verdict.CANCELLED and outcome.cancel_reason == reason
    assert backend.stops == {"z3": reason, "cvc5": reason}
    assert all(a.outcome is AttemptOutcome.CANCELLED for a in outcome.attempts)
    assert race.status().state is SolveState.FINISHED


async def test_the_deadline_ends_the_race_as_a_timeout() -> None:
    backend = FakeBackend({"z3": Script(), "cvc5": Script()})
    outcome = await race_of(backend, timeout_s=0.005).run()
    assert outcome.verdict is Verdict.TIMEOUT
    assert outcome.cancel_reason is not None
    assert outcome.cancel_reason.cause is CancelCause.TIMEOUT
    assert all(a.outcome is AttemptOutcome.TIMEOUT for a in outcome.attempts)
    assert outcome.deadline_ms == 5


async def test_a_cancel_after_the_decision_changes_nothing() -> None:
    release = asyncio.Event()
    backend = FakeBackend({"z3": Script(proved("z3")), "cvc5": Script(refuted("cvc5"), release)})
    race = race_of(backend)
    outcome = await race.run()
    assert not race.cancel(CancelReason(CancelCause.CLIENT, "late"))
    assert outcome.verdict is Verdict.PROVED and outcome.cancel_reason is None


async def test_a_cancel_once_every_attempt_has_ended_is_refused() -> None:
    release = asyncio.Event()
    backend = FakeBackend(
        {"z3": Script(failed("z3", AttemptOutcome.PROVER_ERROR, "crashed"), release)}
    )
    race = race_of(backend)
    running = asyncio.ensure_future(race.run())
    await started(backend, 1)
    release.set()
    outcome = await running
    assert not race.cancel(CancelReason(CancelCause.CLIENT, "late"))
    assert outcome.verdict is Verdict.ERROR and outcome.cancel_reason is None


async def test_contradictory_answers_are_reported_as_a_disagreement() -> None:
    backend = FakeBackend({"z3": Script(proved("z3")), "cvc5": Script(refuted("cvc5"))})
    metrics = Metrics()
    outcome = await race_of(backend, Telemetry(metrics), strategy=Strategy.ALL).run()
    assert outcome.disagreement
    assert {a.answer.value for a in outcome.attempts} == {"proved", "refuted"}
    assert metrics.registry.get_sample_value("proofrace_disagreements_total") == 1


async def test_an_attempt_that_raises_is_a_system_error_and_the_race_goes_on() -> None:
    release = asyncio.Event()
    backend = FakeBackend(
        {"buggy": Script(error=RuntimeError("bug")), "z3": Script(proved("z3"), release)}
    )
    observer = RecordingObserver()
    race = race_of(backend, observer)
    running = asyncio.ensure_future(race.run())
    await started(backend, 2)
    release.set()
    outcome = await running
    buggy, _ = outcome.attempts
    assert buggy.outcome is AttemptOutcome.SYSTEM_ERROR and "internal error" in buggy.message
    assert "bug" not in buggy.message  # the cause stays in the server's log
    assert [str(e) for e in observer.errors] == ["bug"]
    assert (outcome.verdict, outcome.winner) == (Verdict.PROVED, "z3")


async def test_only_errors_give_an_error_verdict_led_by_the_input_error() -> None:
    backend = FakeBackend(
        {
            "a": Script(failed("a", AttemptOutcome.PROVER_ERROR, "crashed")),
            "b": Script(failed("b", AttemptOutcome.INVALID_INPUT, "line 1: bad")),
        }
    )
    outcome = await race_of(backend).run()
    assert outcome.verdict is Verdict.ERROR and outcome.error is not None
    assert outcome.error.kind is ErrorKind.INVALID_INPUT
    assert outcome.error.message == "b: line 1: bad"


async def test_quorum_stops_the_others_once_enough_agree() -> None:
    backend = FakeBackend({"a": Script(proved("a")), "b": Script(proved("b")), "slow": Script()})
    outcome = await race_of(backend, strategy=Strategy.QUORUM, quorum=2).run()
    assert (outcome.verdict, outcome.winner) == (Verdict.PROVED, "a")
    assert backend.stops["slow"].cause is CancelCause.PREEMPTED


# --- the in-flight gauge and the attempt log -------------------------------------------


async def test_the_attempts_in_flight_gauge_returns_to_zero_however_attempts_end() -> None:
    metrics = Metrics()
    backend = FakeBackend(
        {
            "z3": Script(proved("z3")),
            "cvc5": Script(),
            "buggy": Script(error=RuntimeError("bug")),
        }
    )
    with capture_logs() as logs:
        await race_of(backend, Telemetry(metrics)).run()
    assert metrics.registry.get_sample_value("proofrace_attempts_in_flight") == 0
    # Only an attempt whose process was seen to end is logged as reaped.
    ends = {e["prover"]: e["event"] for e in logs if e["event"].startswith("attempt.")}
    assert ends == {"z3": "attempt.reaped", "cvc5": "attempt.reaped", "buggy": "attempt.ended"}


# --- Pool ------------------------------------------------------------------------------


async def test_a_queued_attempt_cancelled_ends_before_it_starts() -> None:
    backend = FakeBackend({"z3": Script()})
    pool = Pool()
    place = Place("local", backend, slots=1)
    pool.add(place)
    first_scope, queued_scope = CancelScope(), CancelScope()
    first = asyncio.ensure_future(
        pool.run("z3", PROBLEM, timeout_s=9, scope=first_scope, progress=AttemptProgress("z3"))
    )
    await started(backend, 1)
    queued = asyncio.ensure_future(
        pool.run("z3", PROBLEM, timeout_s=9, scope=queued_scope, progress=AttemptProgress("z3"))
    )
    await until(lambda: pool.waiting == 1)
    assert not queued.done()
    reason = CancelReason(CancelCause.CLIENT, "stop")
    queued_scope.cancel(reason)
    result = await queued
    assert result.outcome is AttemptOutcome.CANCELLED and result.stop is not None
    assert result.stop.reason == reason
    assert backend.started == ["z3"]  # the queued one never reached the backend
    assert place.in_use == 1
    first_scope.cancel(reason)
    await first
    assert place.in_use == 0


async def test_a_queued_attempt_takes_the_slot_that_frees_up() -> None:
    release = asyncio.Event()
    backend = FakeBackend({"z3": Script(proved("z3"), release)})
    pool = Pool()
    pool.add(Place("local", backend, slots=1))

    def attempt() -> asyncio.Future[object]:
        scope = CancelScope()
        progress = AttemptProgress("z3")
        return asyncio.ensure_future(
            pool.run("z3", PROBLEM, timeout_s=9, scope=scope, progress=progress)
        )

    first, second = attempt(), attempt()
    await started(backend, 1)
    assert backend.started == ["z3"]
    release.set()
    await asyncio.gather(first, second)
    assert backend.started == ["z3", "z3"]


async def test_attempts_spread_to_the_place_with_most_free_slots() -> None:
    near, far = FakeBackend({"z3": Script()}), FakeBackend({"z3": Script()})
    pool = Pool()
    pool.add(Place("near", near, slots=2))
    pool.add(Place("far", far, slots=1))
    scopes = [CancelScope() for _ in range(3)]
    runs = [
        asyncio.ensure_future(
            pool.run("z3", PROBLEM, timeout_s=9, scope=s, progress=AttemptProgress("z3"))
        )
        for s in scopes
    ]
    await started(near, 2)
    await started(far, 1)
    for scope in scopes:
        scope.cancel(CancelReason(CancelCause.SHUTDOWN))
    await asyncio.gather(*runs)


async def test_an_attempt_queued_for_a_place_that_leaves_waits_for_another() -> None:
    backend = FakeBackend({"z3": Script()})
    pool = Pool()
    place = Place("worker w1", backend, slots=1)
    pool.add(place)
    first_scope, queued_scope = CancelScope(), CancelScope()
    first = asyncio.ensure_future(
        pool.run("z3", PROBLEM, timeout_s=9, scope=first_scope, progress=AttemptProgress("z3"))
    )
    await started(backend, 1)
    queued = asyncio.ensure_future(
        pool.run("z3", PROBLEM, timeout_s=9, scope=queued_scope, progress=AttemptProgress("z3"))
    )
    await until(lambda: pool.waiting == 1)
    # Its worker drained: the attempt waits for a place that runs z3 (within its deadline,
    # which the race enforces), and runs on the one that comes.
    pool.remove(place)
    await until(lambda: queued.done() or pool.waiting == 1)  # the removal has been seen
    assert not queued.done() and pool.waiting == 1
    other = FakeBackend({"z3": Script()})
    pool.add(Place("worker w2", other, slots=1))
    await started(other, 1)
    assert pool.waiting == 0
    for scope in (first_scope, queued_scope):
        scope.cancel(CancelReason(CancelCause.SHUTDOWN))
    assert (await queued).outcome is AttemptOutcome.CANCELLED
    await first


# --- RaceService -----------------------------------------------------------------------


def request(*provers: str) -> SolveRequest:
    return SolveRequest(b"(check-sat)", format=Format.SMTLIB2, provers=provers)


async def test_shutdown_cancels_every_race_waits_for_them_and_refuses_new_ones() -> None:
    backend = FakeBackend({"z3": Script(), "cvc5": Script()})
    service = RaceService(backend, RecordingObserver(), RaceLimits())
    solves = [service.start(request("z3")), service.start(request("cvc5"))]
    await started(backend, 2)
    assert service.in_flight == 2
    await service.shutdown()
    assert service.in_flight == 0 and not backend.running
    for solve in solves:
        outcome = await solve.outcome()
        assert outcome.cancel_reason is not None
        assert outcome.cancel_reason.cause is CancelCause.SHUTDOWN
    late = await service.start(request("z3")).outcome()
    assert late.error is not None and late.error.message == "the server is shutting down"


async def test_solves_beyond_the_limit_are_overloaded_and_bad_requests_refused() -> None:
    backend = FakeBackend({"z3": Script()})
    observer = RecordingObserver()
    service = RaceService(backend, observer, RaceLimits(max_solves=1))
    unknown = await service.start(request("vampire")).outcome()
    assert unknown.error is not None and unknown.error.kind is ErrorKind.UNKNOWN_PROVER
    running = service.start(request("z3"))
    over = await service.start(request("z3")).outcome()
    assert over.error is not None and over.error.kind is ErrorKind.OVERLOADED
    assert observer.names().count("solve_refused") == 2
    running.cancel(CancelReason(CancelCause.CLIENT, "done"))
    await running.outcome()
