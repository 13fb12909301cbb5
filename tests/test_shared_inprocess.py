"""Shared races and the verdict cache in the race layer, in process: a fake backend whose
attempts answer when the test says so, and the real RaceService, Race, metrics and stores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from proofrace.cache.sqlite import SqliteStore
from proofrace.cache.verdicts import VerdictCache
from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    CachePolicy,
    CancelCause,
    CancelReason,
    Format,
    Problem,
    ProverInfo,
    SolveRequest,
    SolveState,
    Source,
    Stop,
    Verdict,
)
from proofrace.core.progress import AttemptProgress
from proofrace.observe.cache_telemetry import CacheTelemetry
from proofrace.observe.metrics import Metrics
from proofrace.observe.telemetry import Telemetry
from proofrace.race.plan import Plan, RaceLimits, plan
from proofrace.race.service import RaceService

GOAL = b"(assert false)\n(check-sat)\n"


class FakeBackend:
    """Two provers; an attempt runs until the test answers for its prover or it is stopped."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[CancelReason] = []
        self.answers_given: dict[str, asyncio.Future[Answer]] = {}

    def catalog(self) -> list[ProverInfo]:
        return [ProverInfo(p, "1.0", (Format.SMTLIB2,), True) for p in ("p1", "p2")]

    def answer(self, prover: str) -> None:
        self._future(prover).set_result(Answer.PROVED)

    def _future(self, prover: str) -> asyncio.Future[Answer]:
        if prover not in self.answers_given:
            self.answers_given[prover] = asyncio.get_running_loop().create_future()
        return self.answers_given[prover]

    async def run(
        self,
        prover: str,
        problem: Problem,
        *,
        timeout_s: float,
        scope: CancelScope,
        progress: AttemptProgress,
    ) -> AttemptResult:
        self.started.append(prover)
        stopped = asyncio.ensure_future(scope.wait())
        answered = self._future(prover)
        await asyncio.wait([stopped, answered], return_when=asyncio.FIRST_COMPLETED)
        if scope.reason is not None:
            stopped.cancel()
            self.stopped.append(scope.reason)
            latency = time.monotonic_ns() - (scope.called_ns or 0)
            stop = Stop(scope.reason, latency, False)
            outcome = (
                AttemptOutcome.TIMEOUT
                if scope.reason.cause is CancelCause.TIMEOUT
                else AttemptOutcome.CANCELLED
            )
            return AttemptResult(prover, outcome, stop=stop)
        stopped.cancel()
        answer = answered.result()
        return AttemptResult(prover, AttemptOutcome.PROVED, answer=answer, status="unsat")


def request(timeout_s: float = 30, cache: CachePolicy = CachePolicy.USE) -> SolveRequest:
    timeout_ms = round(timeout_s * 1000)
    return SolveRequest(GOAL, format=Format.SMTLIB2, timeout_ms=timeout_ms, cache=cache)


def service(
    backend: FakeBackend,
    metrics: Metrics,
    cache: VerdictCache | None = None,
    max_timeout_s: float = 60,
) -> RaceService:
    return RaceService(
        backend,
        Telemetry(metrics),
        RaceLimits(max_timeout_s=max_timeout_s),
        cache=cache,
        joins=CacheTelemetry(metrics),
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def settled() -> None:
    """Let every task that can run, run."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_an_identical_solve_joins_the_running_race() -> None:
    backend, metrics = FakeBackend(), Metrics()
    races = service(backend, metrics)
    first = await races.solve(request())
    second = await races.solve(request())
    await settled()
    assert sorted(backend.started) == ["p1", "p2"]  # one set of provers
    assert first.solve_id != second.solve_id
    assert (first.status().source, second.status().source) == (Source.RACE, Source.JOINED)
    backend.answer("p1")
    a, b = await first.outcome(), await second.outcome()
    assert a.verdict is b.verdict is Verdict.PROVED
    assert (a.solve_id, b.solve_id) == (first.solve_id, second.solve_id)
    assert (a.source, b.source) == (Source.RACE, Source.JOINED)
    assert [x.prover for x in b.attempts] == ["p1", "p2"]
    assert sample(metrics, "proofrace_race_joins_total") == 1
    assert sample(metrics, "proofrace_solves_total", strategy="firstWins", verdict="proved") == 1
    # Finished: the next identical solve starts a race of its own.
    third = await races.solve(request())
    await settled()
    assert third.status().source is Source.RACE and len(backend.started) == 4
    await races.shutdown()


async def test_a_caller_leaving_detaches_only_itself() -> None:
    backend, metrics = FakeBackend(), Metrics()
    races = service(backend, metrics)
    first = await races.solve(request())
    second = await races.solve(request())
    await settled()
    assert first.cancel(CancelReason(CancelCause.CLIENT, "first gives up"))
    gone = await first.outcome()  # at once: nothing of its own runs any more
    assert gone.verdict is Verdict.CANCELLED
    assert gone.cancel_reason == CancelReason(CancelCause.CLIENT, "first gives up")
    assert first.status().state is SolveState.FINISHED
    assert not first.cancel(CancelReason(CancelCause.CLIENT, "again"))
    assert backend.stopped == [] and second.status().state is SolveState.RUNNING
    backend.answer("p2")
    kept = await second.outcome()
    assert kept.verdict is Verdict.PROVED and kept.winner == "p2"
    await races.shutdown()


async def test_the_provers_stop_when_the_last_caller_leaves_with_its_cause() -> None:
    backend, metrics = FakeBackend(), Metrics()
    races = service(backend, metrics)
    first = await races.solve(request())
    second = await races.solve(request())
    await settled()
    first.cancel(CancelReason(CancelCause.TOKEN_DROPPED, "first dropped"))
    second.cancel(CancelReason(CancelCause.DISCONNECTED, "second went away"))
    a, b = await first.outcome(), await second.outcome()
    assert a.cancel_reason is not None and a.cancel_reason.cause is CancelCause.TOKEN_DROPPED
    assert b.cancel_reason is not None and b.cancel_reason.cause is CancelCause.DISCONNECTED
    assert [r.cause for r in backend.stopped] == [CancelCause.DISCONNECTED] * 2
    assert {x.stop.reason.cause for x in b.attempts if x.stop} == {CancelCause.DISCONNECTED}
    # The preemption histogram saw one stop per attempt, as for any race.
    count = sample(
        metrics,
        "proofrace_preemption_latency_seconds_count",
        reason="disconnected",
        prover="p1",
    )
    assert count == 1
    await races.shutdown()


async def test_a_joiner_with_a_shorter_deadline_times_out_alone() -> None:
    backend, metrics = FakeBackend(), Metrics()
    races = service(backend, metrics)
    first = await races.solve(request(timeout_s=30))
    second = await races.solve(request(timeout_s=0.05))
    short = await second.outcome()
    assert short.verdict is Verdict.TIMEOUT
    assert short.cancel_reason is not None and short.cancel_reason.cause is CancelCause.TIMEOUT
    assert short.deadline_ms == 50
    assert backend.stopped == [] and first.status().state is SolveState.RUNNING
    backend.answer("p1")
    long = await first.outcome()
    assert long.verdict is Verdict.PROVED and long.deadline_ms == 30_000
    await races.shutdown()


async def test_a_joiner_with_a_longer_deadline_keeps_the_race_going() -> None:
    backend, metrics = FakeBackend(), Metrics()
    races = service(backend, metrics)
    first = await races.solve(request(timeout_s=0.05))
    second = await races.solve(request(timeout_s=30))
    assert (await first.outcome()).verdict is Verdict.TIMEOUT
    assert backend.stopped == [] and second.status().state is SolveState.RUNNING
    backend.answer("p1")
    assert (await second.outcome()).verdict is Verdict.PROVED
    await races.shutdown()


async def test_a_joiner_extends_the_race_only_up_to_the_servers_maximum() -> None:
    backend, metrics = FakeBackend(), Metrics()
    races = service(backend, metrics, max_timeout_s=0.3)
    first = await races.solve(request(timeout_s=0.1))
    await asyncio.sleep(0.05)  # the joiner comes later; its deadline still ends with the race's
    second = await races.solve(request(timeout_s=30))
    a, b = await first.outcome(), await second.outcome()
    assert a.verdict is b.verdict is Verdict.TIMEOUT
    assert b.deadline_ms <= 300 - 50
    assert [r.cause for r in backend.stopped] == [CancelCause.TIMEOUT] * 2
    await races.shutdown()


async def test_a_cancel_after_the_decision_changes_nothing() -> None:
    backend, metrics = FakeBackend(), Metrics()
    races = service(backend, metrics)
    first = await races.solve(request())
    second = await races.solve(request())
    await settled()
    backend.answer("p1")
    await settled()
    assert not second.cancel(CancelReason(CancelCause.CLIENT, "too late"))
    assert (await second.outcome()).verdict is Verdict.PROVED
    assert (await first.outcome()).verdict is Verdict.PROVED
    await races.shutdown()


async def test_shutdown_ends_every_caller(tmp_path: Path) -> None:
    backend, metrics = FakeBackend(), Metrics()
    races = service(backend, metrics)
    callers = [await races.solve(request()) for _ in range(3)]
    await settled()
    await races.shutdown()
    for caller in callers:
        outcome = await caller.outcome()
        assert outcome.cancel_reason is not None
        assert outcome.cancel_reason.cause is CancelCause.SHUTDOWN


# --- the verdict cache in front of the races -------------------------------------------------


@pytest.fixture
async def cache(tmp_path: Path):
    metrics = Metrics()
    store = await SqliteStore.open(tmp_path / "verdicts.sqlite3", 100)
    verdicts = VerdictCache(store, CacheTelemetry(metrics))
    yield verdicts, metrics
    await verdicts.close()


async def solved(races: RaceService, verdicts: VerdictCache, policy: CachePolicy) -> Source:
    """Solve the goal (p1 answers if it races) once the cache's writes are done."""
    races_backend(races).answers_given.clear()
    solve = await races.solve(request(cache=policy))
    if not solve.done:
        await settled()
        races_backend(races).answer("p1")
    outcome = await solve.outcome()
    assert outcome.verdict is Verdict.PROVED
    await settled()
    await verdicts.flush()
    return outcome.source


def races_backend(races: RaceService) -> FakeBackend:
    backend = races._backend
    assert isinstance(backend, FakeBackend)
    return backend


async def test_a_hit_answers_at_once_and_races_nothing(cache) -> None:
    verdicts, metrics = cache
    backend = FakeBackend()
    races = service(backend, metrics, cache=verdicts)
    assert await solved(races, verdicts, CachePolicy.USE) is Source.RACE
    hit = await races.solve(request())
    assert hit.done and hit.status().source is Source.CACHE
    outcome = await hit.outcome()
    assert outcome.verdict is Verdict.PROVED and outcome.source is Source.CACHE
    assert outcome.cached is not None and outcome.cached.found_by == "p1"
    assert len(backend.started) == 2
    assert sample(metrics, "proofrace_cache_hits_total") == 1
    assert sample(metrics, "proofrace_cache_misses_total") == 1
    assert sample(metrics, "proofrace_cache_entries") == 1
    await races.shutdown()


async def test_bypass_refresh_and_certified_only(cache) -> None:
    verdicts, metrics = cache
    backend = FakeBackend()
    races = service(backend, metrics, cache=verdicts)
    # bypass: neither read nor written.
    assert await solved(races, verdicts, CachePolicy.BYPASS) is Source.RACE
    assert await verdicts.store.size() == 0
    assert await solved(races, verdicts, CachePolicy.USE) is Source.RACE
    found = await verdicts.store.get(races.key(plan_of(races)).digest)
    assert found is not None
    # refresh: races although the cache holds the goal, and overwrites the entry.
    assert await solved(races, verdicts, CachePolicy.REFRESH) is Source.RACE
    refreshed = await verdicts.store.get(found.key)
    assert refreshed is not None and refreshed.solve_id != found.solve_id
    # certifiedOnly: a single prover's word does not answer it; use does.
    assert await solved(races, verdicts, CachePolicy.CERTIFIED_ONLY) is Source.RACE
    assert await solved(races, verdicts, CachePolicy.USE) is Source.CACHE
    assert len(backend.started) == 8
    await races.shutdown()


async def test_a_failing_store_costs_a_miss_not_a_solve(cache) -> None:
    verdicts, metrics = cache
    await verdicts.store.close()  # every call now fails
    backend = FakeBackend()
    races = service(backend, metrics, cache=verdicts)
    assert await solved(races, verdicts, CachePolicy.USE) is Source.RACE
    assert sample(metrics, "proofrace_cache_errors_total", operation="lookup") == 1
    assert sample(metrics, "proofrace_cache_errors_total", operation="store") == 1
    await races.shutdown()


def plan_of(races: RaceService) -> Plan:
    planned = plan(request(), races_backend(races).catalog(), RaceLimits(max_timeout_s=60))
    assert isinstance(planned, Plan)
    return planned
