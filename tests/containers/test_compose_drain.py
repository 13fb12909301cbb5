"""Stopping the compose deployment with races in flight, in every order an operator might:
`docker-compose stop` or `down` (Compose stops the workers first, then the dispatcher),
the workers alone then the dispatcher, or the dispatcher first. Whatever the order, each
client gets a verdict or a cancel with cause `shutdown`, never an error, and no message is
empty; every container drains to exit code 0."""

from __future__ import annotations

import asyncio
import json

import pytest

from proofrace.client import AttemptOutcome, CancelCause, Client, SolveOutcome, Verdict

from .compose import Compose
from .nodes import REPO, follow_logs

HARD = (REPO / "samples" / "pigeonhole-12.cnf").read_text()
SOLVES = 2  # in flight when the stop comes, each with an attempt on each worker

# How each scenario stops the deployment: the docker-compose commands, in order.
ORDERS: dict[str, list[list[str]]] = {
    "stop": [["stop"]],
    "down": [["down", "--volumes"]],
    "workers-then-dispatcher": [["stop", "worker"], ["stop", "dispatcher"]],
    "dispatcher-then-workers": [["stop", "dispatcher"], ["stop", "worker"]],
}


def acceptable(outcome: SolveOutcome) -> None:
    """A verdict, or a cancel by the shutdown; and every message says something."""
    if outcome.verdict is Verdict.CANCELLED:
        assert outcome.cancel_reason is not None
        assert outcome.cancel_reason.cause is CancelCause.SHUTDOWN, outcome.cancel_reason
        assert outcome.cancel_reason.message
    else:
        assert outcome.verdict in (Verdict.PROVED, Verdict.REFUTED), outcome
    for attempt in outcome.attempts:
        if attempt.outcome in (AttemptOutcome.PROVER_ERROR, AttemptOutcome.SYSTEM_ERROR):
            assert attempt.message, attempt
        if attempt.stop is not None:
            assert attempt.stop.reason.message, attempt


@pytest.mark.parametrize("order", list(ORDERS))
def test_stopping_the_deployment_with_races_in_flight(order: str, run) -> None:
    compose = Compose()
    compose("up", "-d", "--no-build", "--scale", "prometheus=0")
    try:
        (dispatcher,) = compose.containers("dispatcher")
        log, stream = follow_logs(dispatcher, "dispatcher")
        workers = compose.containers("worker")
        worker_logs = [follow_logs(w, w.name) for w in workers]
        log.wait_for(lambda e: e["event"] == "worker.registered", len(workers), timeout=60)
        address = compose.address("dispatcher", 7340)

        async def scenario() -> list[SolveOutcome]:
            async with Client.connect(address) as client:
                jobs = [
                    await client.solve(HARD, provers=["cadical", "minisat"], time_limit=300)
                    for _ in range(SOLVES)
                ]
                for job in jobs:
                    await job.status()
                # Every worker runs an attempt (one slot each, so some wait their turn).
                await asyncio.to_thread(
                    log.wait_for, lambda e: e["event"] == "attempt.started", len(workers), 60
                )
                # Waiting on the results before the stop: the drain answers them.
                results = [asyncio.ensure_future(job.result()) for job in jobs]
                for command, *services in ORDERS[order]:
                    await asyncio.to_thread(compose, command, "--timeout", "30", *services)
                return list(await asyncio.gather(*results))

        outcomes = run(scenario())
        for outcome in outcomes:
            acceptable(outcome)
        assert log.wait_for(lambda e: e["event"] == "server.stopped", 1, 30)
        assert log.all()[-1]["event"] == "server.stopped"
        for worker_log, worker_stream in worker_logs:
            worker_log.wait_for(lambda e: e["event"] == "worker.stopped", 1, 30)
            worker_stream.close()
        if order != "down":
            for container in [dispatcher, *workers]:
                container.reload()
                assert container.attrs["State"]["ExitCode"] == 0, container.name
        stream.close()
        # A worker that stopped while the dispatcher ran was a planned drain: logged at info.
        if order != "dispatcher-then-workers":
            drained = [e for e in log.all() if e["event"] == "worker.drained"]
            assert len(drained) == len(workers), [e["event"] for e in log.all()]
            assert not [e for e in log.all() if e["event"] == "worker.lost"]
        errors = [e for e in log.all() if e["event"] == "solve.error"]
        assert errors == [], json.dumps(errors)
    finally:
        compose("down", "--volumes", "--timeout", "30")
