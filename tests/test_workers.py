"""Remote workers: a race spread over machines, and cancellation that follows it there."""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVER_ENV, WORKER_ENV, server_args

from proofrace.client import AttemptOutcome, CancelCause, Client, ErrorKind, Strategy, Verdict

from harness import SAMPLES, RunningServer, running_server, wait_gone

EASY = (SAMPLES / "distinct.smt2").read_text()
HARD = (SAMPLES / "pigeonhole-12.cnf").read_text()


def worker_args(tmp: Path, name: str, *extra: str) -> list[str]:
    registry = next(a for a in server_args(tmp) if a.endswith(".toml"))
    return [
        "--name", name, "--slots", "2", "--metrics", "127.0.0.1:0",
        "--provers-file", registry, *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def cluster(tmp: Path, workers: int = 2) -> Iterator[tuple[RunningServer, list[RunningServer]]]:
    """A dispatcher that runs nothing itself, and workers that dial in to it."""
    with contextlib.ExitStack() as stack:
        dispatcher = stack.enter_context(
            running_server(server_args(tmp, "--local-slots", "0"), WORKER_ENV)
        )
        started = [
            stack.enter_context(
                running_server(
                    worker_args(tmp, f"w{i}", "--dispatcher", dispatcher.address),
                    WORKER_ENV,
                    command="worker",
                )
            )
            for i in range(1, workers + 1)
        ]
        dispatcher.wait_for_events(lambda e: e["event"] == "worker.registered", workers)
        yield dispatcher, started


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[RunningServer, list[RunningServer]]]:
    with cluster(tmp_path) as running:
        yield running


def started_on(worker: RunningServer, prover: str) -> int:
    event = worker.wait_for_event(
        lambda e: e["event"] == "attempt.started" and e["prover"] == prover
    )
    return int(event["pid"])


def running_on(workers: list[RunningServer], prover: str) -> RunningServer:
    """The worker whose log shows `prover` started: each log is awaited in its own thread, since
    a worker's log may reach the test after the dispatcher's."""
    pool = concurrent.futures.ThreadPoolExecutor(len(workers))
    waits = {
        pool.submit(w.wait_event, 30, event="attempt.started", prover=prover): w for w in workers
    }
    done, _ = concurrent.futures.wait(waits, 30, concurrent.futures.FIRST_COMPLETED)
    pool.shutdown(wait=False)
    found = [waits[f] for f in done if f.exception() is None]
    assert found, f"{prover} started on no worker"
    return found[0]


def placed(
    dispatcher: RunningServer, workers: list[RunningServer], count: int
) -> dict[str, tuple[RunningServer, int]]:
    """Where each attempt of the only solve so far runs: prover -> (worker, pid). This blocks:
    call it once the solve request has left (after an awaited call on the job). The pool
    spreads the attempts, so each of `count` workers runs one."""
    started = [
        (w, w.wait_for_event(lambda e: e["event"] == "attempt.started")) for w in workers[:count]
    ]
    dispatcher.wait_for_events(lambda e: e["event"] == "attempt.started", count)
    return {event["prover"]: (w, int(event["pid"])) for w, event in started}


def test_a_race_spreads_over_the_workers(two_workers, run) -> None:
    dispatcher, (w1, w2) = two_workers

    async def all_strategy():
        async with Client.connect(dispatcher.address) as client:
            job = await client.solve(EASY, provers=["z3", "cvc5"], strategy=Strategy.ALL)
            return await job.result()

    outcome = run(all_strategy())
    assert outcome.verdict is Verdict.PROVED
    assert all(a.outcome is AttemptOutcome.PROVED for a in outcome.attempts)
    # One attempt on each worker: the pool puts each where the most slots are free.
    for worker in (w1, w2):
        worker.wait_for_event(lambda e: e["event"] == "attempt.reaped")
    ran = [len(w.events(event="attempt.started")) for w in (w1, w2)]
    assert ran == [1, 1]
    assert dispatcher.metric("proofrace_workers") == 2


def test_a_cancel_stops_the_processes_on_both_workers(two_workers, run) -> None:
    dispatcher, (w1, w2) = two_workers

    async def scenario():
        async with Client.connect(dispatcher.address) as client:
            job = await client.solve(HARD, provers=["cadical", "minisat"])
            await job.status()
            where = placed(dispatcher, [w1, w2], 2)
            await job.cancel("stop everywhere")
            return where, await job.result()

    where, outcome = run(scenario())
    assert {w for w, _ in where.values()} == {w1, w2}  # one attempt on each
    pids = [pid for _, pid in where.values()]
    assert outcome.verdict is Verdict.CANCELLED
    for attempt in outcome.attempts:
        assert attempt.outcome is AttemptOutcome.CANCELLED
        assert attempt.stop is not None and attempt.stop.reason.cause is CancelCause.CLIENT
        assert "its own stop took" in attempt.message
    assert wait_gone(pids) == []
    assert w1.prover_pids() == [] and w2.prover_pids() == []
    # Latency is measured at both ends: the dispatcher (whole path) and each worker (its part).
    assert dispatcher.metric("proofrace_preemption_latency_seconds_count", reason="client") == 2
    assert w1.metric("proofrace_preemption_latency_seconds_count") == 1
    assert w2.metric("proofrace_preemption_latency_seconds_count") == 1


def test_a_worker_killed_mid_race_ends_as_worker_lost(two_workers, run) -> None:
    dispatcher, (w1, w2) = two_workers

    async def scenario():
        async with Client.connect(dispatcher.address) as client:
            job = await client.solve(HARD, provers=["cadical", "minisat"], time_limit=60)
            await job.status()
            where = placed(dispatcher, [w1, w2], 2)
            lost, lost_pid = where["cadical"]
            lost.process.send_signal(signal.SIGKILL)
            dispatcher.wait_for_event(lambda e: e["event"] == "worker.lost")
            await job.cancel("the rest can stop too")
            return lost, lost_pid, await job.result()

    lost, lost_pid, outcome = run(scenario())
    by_prover = {a.prover: a for a in outcome.attempts}
    assert by_prover["cadical"].outcome is AttemptOutcome.SYSTEM_ERROR
    name = "w1" if lost is w1 else "w2"
    assert f"worker {name} lost" in by_prover["cadical"].message
    assert by_prover["minisat"].outcome is AttemptOutcome.CANCELLED
    assert outcome.verdict is Verdict.CANCELLED
    # The dead worker's guard took its prover down with it.
    assert wait_gone([lost_pid]) == []
    assert dispatcher.metric("proofrace_workers") == 1


def test_a_worker_whose_dispatcher_dies_stops_its_attempts(two_workers, run) -> None:
    dispatcher, (w1, w2) = two_workers

    async def scenario():
        async with Client.connect(dispatcher.address) as client:
            job = await client.solve(HARD, provers=["cadical", "minisat"])
            await job.status()
            pids = [pid for _, pid in placed(dispatcher, [w1, w2], 2).values()]
            dispatcher.process.send_signal(signal.SIGKILL)
            del job
            return pids

    pids = run(scenario())
    assert wait_gone(pids) == []
    for worker in (w1, w2):
        worker.wait_for_event(lambda e: e["event"] == "worker.dispatcher_lost")
        event = worker.wait_for_event(lambda e: e["event"] == "attempt.preempted")
        assert event["reason"] == "disconnected"


def test_sigterm_drains_a_worker(tmp_path: Path, run) -> None:
    with cluster(tmp_path, workers=1) as (dispatcher, (worker,)):

        async def scenario():
            async with Client.connect(dispatcher.address) as client:
                job = await client.solve(HARD, provers=["cadical"], time_limit=60)
                await job.status()
                pid = started_on(worker, "cadical")
                worker.process.send_signal(signal.SIGTERM)
                # The run the drain ended is reported; the attempt then waits for a place.
                withdrawn = dispatcher.wait_event(event="attempt.preempted", reason="shutdown")
                waiting = dispatcher.metric("proofrace_attempts_waiting")
                # The dispatcher stops too before any worker comes back.
                dispatcher.process.send_signal(signal.SIGTERM)
                return pid, withdrawn, waiting, await job.result()

        pid, withdrawn, waiting, outcome = run(scenario())
        assert withdrawn["worker"] == "w1" and withdrawn["message"] == "worker w1 is shutting down"
        assert waiting == 1
        # Both were sent SIGTERM above: wait for their exits, without signalling them again.
        assert worker.process.wait(timeout=30) == 0
        assert dispatcher.process.wait(timeout=30) == 0
        assert wait_gone([pid]) == []
        # Never an error without a message: a cancel with cause `shutdown`.
        (attempt,) = outcome.attempts
        assert attempt.outcome is AttemptOutcome.CANCELLED
        assert attempt.stop is not None and attempt.stop.reason.cause is CancelCause.SHUTDOWN
        assert outcome.verdict is Verdict.CANCELLED and outcome.cancel_reason is not None
        assert outcome.cancel_reason.cause is CancelCause.SHUTDOWN
        # A drain is planned: logged at info, and it leaves no `connected` series behind.
        drained = dispatcher.wait_event(event="worker.drained", name="w1")
        assert drained["level"] == "info"
        assert dispatcher.events(event="worker.lost") == []


def test_a_draining_worker_hands_its_attempt_to_another(two_workers, run) -> None:
    dispatcher, (w1, w2) = two_workers

    async def scenario():
        async with Client.connect(dispatcher.address) as client:
            job = await client.solve(HARD, provers=["cadical"], time_limit=120)
            await job.status()
            first = dispatcher.wait_event(event="attempt.started", prover="cadical")
            leaving = running_on([w1, w2], "cadical")
            staying = w2 if leaving is w1 else w1
            leaving.process.send_signal(signal.SIGTERM)
            # It starts over on the other worker, and runs there until cancelled.
            moved = staying.wait_event(event="attempt.started", prover="cadical")
            await job.cancel("seen it move")
            return leaving, first, moved, await job.result()

    leaving, first, moved, outcome = run(scenario())
    assert leaving.stop() == 0
    assert first["attempt"] == moved["attempt"]
    (attempt,) = outcome.attempts
    assert attempt.outcome is AttemptOutcome.CANCELLED
    assert attempt.stop is not None and attempt.stop.reason.cause is CancelCause.CLIENT
    assert attempt.worker == ("w2" if leaving is w1 else "w1")
    # The run that the drain ended is reported for what it was.
    withdrawn = dispatcher.wait_event(event="attempt.preempted", reason="shutdown")
    assert withdrawn["worker"] == ("w1" if leaving is w1 else "w2")


def test_workers_learn_the_real_reason_and_lost_ones_stay_visible(two_workers, run) -> None:
    dispatcher, (w1, w2) = two_workers

    async def scenario():
        async with Client.connect(dispatcher.address) as client:
            # `think` never answers; `liar` answers at once: think is preempted by liar.
            job = await client.solve(EASY, provers=["think", "liar"])
            preempted = await job.result()
            job = await client.solve(HARD, provers=["cadical"], time_limit=3)
            return preempted, await job.result()

    preempted, timed_out = run(scenario())
    assert preempted.winner == "liar"
    (thinker,) = [w for w in (w1, w2) if w.events(event="attempt.reaped", prover="think")]
    event = thinker.wait_event(event="attempt.preempted", prover="think")
    assert (event["reason"], event["message"]) == ("preempted", "preempted by liar")
    assert event["worker"] == ("w1" if thinker is w1 else "w2")  # every line names the worker
    assert thinker.metric("proofrace_preemption_latency_seconds_count", reason="preempted") == 1
    assert thinker.metric("proofrace_preemption_latency_seconds_count", reason="client") == 0
    assert timed_out.verdict is Verdict.TIMEOUT
    (ran,) = [w for w in (w1, w2) if w.events(event="attempt.reaped", prover="cadical")]
    assert ran.wait_event(event="attempt.preempted", prover="cadical")["reason"] == "timeout"
    # Workers are named in the dispatcher's metrics; a lost one reads 0 under its name.
    assert dispatcher.metric("proofrace_worker_connected", worker="w1") == 1
    w2.process.send_signal(signal.SIGKILL)
    lost = dispatcher.wait_event(event="worker.lost", name="w2")
    assert lost["level"] == "warning"
    assert dispatcher.metric("proofrace_worker_connected", worker="w2") == 0
    assert dispatcher.metric("proofrace_worker_departures_total", worker="w2", how="lost") == 1


def test_a_dispatcher_dials_the_workers_in_its_configuration(tmp_path: Path, run) -> None:
    with running_server(
        worker_args(tmp_path, "listed", "--listen", "127.0.0.1:0"), WORKER_ENV, command="worker"
    ) as worker, running_server(
        server_args(tmp_path, "--local-slots", "0", "--worker", worker.address), WORKER_ENV
    ) as dispatcher:  # fmt: skip
        dispatcher.wait_for_event(lambda e: e["event"] == "worker.registered")

        async def scenario():
            async with Client.connect(dispatcher.address) as client:
                job = await client.solve(EASY, provers=["z3"])
                return await job.result()

        outcome = run(scenario())
        assert outcome.verdict is Verdict.PROVED
        worker.wait_for_event(lambda e: e["event"] == "attempt.reaped")  # it ran there


def test_a_prover_no_place_runs_is_unavailable_not_unknown(tmp_path: Path, run) -> None:
    with running_server(server_args(tmp_path, "--local-slots", "0"), SERVER_ENV) as dispatcher:

        async def scenario():
            async with Client.connect(dispatcher.address) as client:
                return await (await client.solve(EASY, provers=["z3"])).result()

        outcome = run(scenario())
        assert outcome.error is not None
        assert outcome.error.kind is ErrorKind.PROVER_UNAVAILABLE
