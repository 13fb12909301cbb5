"""A dispatcher and two workers in containers on one Docker network: a race spread over them,
a cancel that reaches both, a worker killed mid-race, and SIGTERM to the dispatcher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from proofrace.client import AttemptOutcome, CancelCause, Client, Strategy, Verdict

from .nodes import REPO, cluster

SAMPLES = REPO / "samples"
EASY = (SAMPLES / "distinct.smt2").read_text()
HARD = (SAMPLES / "pigeonhole-12.cnf").read_text()

# Three members of a SAT portfolio, so one race can occupy three containers.
PORTFOLIO = {
    "cadical-1": ["cadical", "-q", "-n", "--seed=1"],
    "cadical-2": ["cadical", "-q", "-n", "--seed=2"],
    "minisat-1": ["minisat", "-verb=0", "-rnd-seed=1"],
}
PORTFOLIO_TOML = "".join(
    f'[{name}]\ncommand = {json.dumps([*argv, "{input}"])}\nformats = ["dimacs"]\n'
    "default = false\n"
    "rules = [['^s UNSATISFIABLE$', \"proved\"], ['^UNSATISFIABLE$', \"proved\"]]\n"
    for name, argv in PORTFOLIO.items()
)
PORTFOLIO_FILE = "/tmp/portfolio.toml"


def medium_problem(tmp: Path) -> str:
    """Pigeonhole with 10 pigeons: a few seconds for cadical or minisat, long enough to kill
    a worker while its prover runs, short enough for the other to finish."""
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_pigeonhole.py"), "10", str(tmp / "php10")],
        check=True,
    )
    return (tmp / "php10.cnf").read_text()


def started_on(workers, count: int) -> dict[str, tuple[object, int]]:
    """prover -> (worker node, pid) for the attempts the workers have started so far."""
    found = {}
    for worker in workers:
        for event in worker.events("attempt.started"):
            found[event["prover"]] = (worker, int(event["pid"]))
    assert len(found) >= count, found
    return found


def test_a_race_is_solved_across_the_workers(pair, run) -> None:
    running, dispatcher, (w1, w2) = pair
    before = [len(w.events("attempt.started")) for w in (w1, w2)]

    async def solve():
        async with Client.connect(running.address) as client:
            job = await client.solve(EASY, provers=["z3", "cvc5"], strategy=Strategy.ALL)
            return await job.result()

    outcome = run(solve())
    assert outcome.verdict is Verdict.PROVED
    assert sorted(a.prover for a in outcome.attempts) == ["cvc5", "z3"]
    assert all(a.outcome is AttemptOutcome.PROVED for a in outcome.attempts)
    # The dispatcher runs nothing itself: one attempt went to each worker's container.
    after = [len(w.events("attempt.started")) for w in (w1, w2)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]
    assert dispatcher.metric("proofrace_workers") == 2


def test_a_cancel_stops_the_provers_in_both_workers(pair, run) -> None:
    running, dispatcher, (w1, w2) = pair
    nodes = [dispatcher, w1, w2]
    before = [
        n.metric("proofrace_preemption_latency_seconds_count", reason="client") for n in nodes
    ]
    started = [len(w.events("attempt.started")) for w in (w1, w2)]

    async def scenario():
        async with Client.connect(running.address) as client:
            job = await client.solve(HARD, provers=["cadical", "minisat"])
            await job.status()
            # Each worker container has its prover running before the cancel (a worker logs
            # the start once the process exists).
            for worker, count in zip((w1, w2), started, strict=True):
                worker.wait_for("attempt.started", count + 1)
                assert worker.provers()
            await job.cancel("stop everywhere")
            return await job.result()

    outcome = run(scenario())
    assert outcome.verdict is Verdict.CANCELLED
    assert len(outcome.attempts) == 2
    for attempt in outcome.attempts:
        assert attempt.outcome is AttemptOutcome.CANCELLED
        assert attempt.stop is not None and attempt.stop.reason.cause is CancelCause.CLIENT
    # result() answers once every attempt is reaped, on the workers too.
    assert w1.provers() == [] and w2.provers() == []
    # Each container measured the preemption: the dispatcher the whole path, each worker its
    # own part.
    after = [n.metric("proofrace_preemption_latency_seconds_count", reason="client") for n in nodes]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1]
    for node in nodes:
        assert node.metric("proofrace_preemption_latency_seconds_sum", reason="client") > 0
        assert (
            node.metric("proofrace_preemption_latency_seconds_bucket", reason="client", le="10.0")
            >= 1
        )


def test_docker_kill_of_a_worker_mid_race_still_ends_the_race(tmp_path: Path, run) -> None:
    problem = medium_problem(tmp_path)
    with cluster() as running:
        dispatcher = running.dispatcher(env={"PROOFRACE_LOCAL_SLOTS": "0"})
        workers = [running.worker(f"w{i}") for i in (1, 2)]
        dispatcher.wait_for("worker.registered", 2)

        async def scenario():
            async with Client.connect(running.address) as client:
                job = await client.solve(problem, provers=["cadical", "minisat"], time_limit=120)
                await job.status()
                for worker in workers:
                    worker.wait_for("attempt.started")
                where = started_on(workers, 2)
                lost = where["cadical"][0]
                lost.wrapped.kill()  # SIGKILL to the whole container: no drain, no goodbye
                return lost, await job.result()

        lost, outcome = run(scenario())
        survivor = next(w for w in workers if w is not lost)
        by_prover = {a.prover: a for a in outcome.attempts}
        # The race goes on without the lost worker and ends on the survivor's answer.
        assert by_prover["cadical"].outcome is AttemptOutcome.SYSTEM_ERROR
        assert f"worker {lost.name} lost" in by_prover["cadical"].message
        assert by_prover["cadical"].worker == lost.name
        # It ran until the loss was noticed: its elapsed time says so, not zero.
        assert by_prover["cadical"].elapsed_ns > 0
        assert by_prover["minisat"].outcome is AttemptOutcome.PROVED
        assert outcome.verdict is Verdict.PROVED and outcome.winner == "minisat"
        lost_event = dispatcher.wait_for("worker.lost")[0]
        assert lost_event["name"] == lost.name
        assert dispatcher.metric("proofrace_workers") == 1
        # Still visible under its name: an alert on `proofrace_worker_connected == 0` fires.
        assert dispatcher.metric("proofrace_worker_connected", worker=lost.name) == 0
        assert dispatcher.metric("proofrace_worker_connected", worker=survivor.name) == 1
        assert lost.state()["Running"] is False
        assert survivor.provers() == []


def test_sigterm_to_the_dispatcher_leaves_no_prover_in_any_container(run) -> None:
    files = {PORTFOLIO_FILE: PORTFOLIO_TOML}
    env = {"PROOFRACE_PROVERS_FILE": PORTFOLIO_FILE}
    with cluster() as running:
        # One slot in each of the three containers, and three attempts: one runs in each.
        dispatcher = running.dispatcher(env={**env, "PROOFRACE_LOCAL_SLOTS": "1"}, files=files)
        workers = [
            running.worker(f"w{i}", env={**env, "PROOFRACE_SLOTS": "1"}, files=files)
            for i in (1, 2)
        ]
        dispatcher.wait_for("worker.registered", 2)
        nodes = [dispatcher, *workers]

        async def scenario():
            async with Client.connect(running.address) as client:
                job = await client.solve(HARD, provers=list(PORTFOLIO))
                await job.status()
                for node in nodes:
                    node.wait_for("attempt.started")
                    assert node.provers()
                dispatcher.wrapped.kill(signal="SIGTERM")
                # A result() still pending when the drain begins gets its answer.
                return await job.result()

        outcome = run(scenario())
        assert outcome.verdict is Verdict.CANCELLED
        for attempt in outcome.attempts:
            assert attempt.outcome is AttemptOutcome.CANCELLED
            assert attempt.stop is not None and attempt.stop.reason.cause is CancelCause.SHUTDOWN
        assert dispatcher.wrapped.wait(timeout=30)["StatusCode"] == 0
        dispatcher.wait_for("server.stopped")
        for worker in workers:
            assert worker.provers() == []
            # The dispatcher stopped them itself while draining, and told each worker why;
            # they were not left to the connection dropping.
            (event,) = worker.wait_for("attempt.preempted")
            assert event["reason"] == "shutdown", event
            assert event["message"] == "the server is shutting down"
            assert (
                worker.metric("proofrace_preemption_latency_seconds_count", reason="shutdown") == 1
            )
            # The worker lives on and waits for a dispatcher to come back.
            worker.wait_for("worker.dispatcher_lost")
            assert worker.state()["Running"] is True
        # SIGTERM to a worker container drains it and it exits cleanly.
        for worker in workers:
            worker.wrapped.kill(signal="SIGTERM")
        for worker in workers:
            assert worker.wrapped.wait(timeout=30)["StatusCode"] == 0
            worker.wait_for("worker.stopped")


def test_the_image_runs_unprivileged_with_a_health_check(pair) -> None:
    # Last in the module: by now the first health probes (10 s after start) have run.
    _, dispatcher, workers = pair
    config = dispatcher.wrapped.attrs["Config"]
    assert config["User"].split(":")[0] == "proofrace"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    for node in [dispatcher, *workers]:
        # tini is PID 1, proofrace under it; nothing runs as root.
        assert {p["uid"] for p in node.processes()} == {"10001"}
        node.wait_healthy()
        assert node.http_get("/healthz")[0] == 200
