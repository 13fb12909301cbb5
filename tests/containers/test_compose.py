"""docker-compose.yml with Debian's docker-compose (v1): `up --scale worker=3` gives a
dispatcher with three workers, Prometheus scrapes all four, and races run through it."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from proofrace.client import Client, Verdict
from tests.support.server import EventLog

from .compose import Compose
from .nodes import (
    PROVER_COMMANDS,
    REPO,
    follow_logs,
    http_get,
    metric_sum,
    until,
    wait_healthy,
)

WORKERS = 3
HARD = (REPO / "samples" / "pigeonhole-12.cnf").read_text()


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    # The count the docs say to set for good (a `--scale` would last until the next `up`).
    deployment = Compose(env={"PROOFRACE_WORKERS": str(WORKERS)})
    try:
        deployment("up", "-d", "--no-build")
        yield deployment
    finally:
        deployment("down", "--volumes", "--timeout", "30")


def test_scaled_workers_register_and_prometheus_scrapes_every_container(compose, run) -> None:
    assert len(compose.containers("worker")) == WORKERS
    (dispatcher,) = compose.containers("dispatcher")
    log, stream = follow_logs(dispatcher, "dispatcher")
    try:
        log.wait_for(lambda e: e["event"] == "worker.registered", WORKERS, timeout=60)
        metrics = compose.address("dispatcher", 7341)
        workers = metric_sum(http_get(f"http://{metrics}/metrics")[1], "proofrace_workers")
        assert workers == WORKERS
        run_through(compose, log, run)
    finally:
        stream.close()
    scraped_by_prometheus(compose)


def run_through(compose: Compose, dispatcher_log: EventLog, run) -> None:
    """A race that finishes, and one cancelled once both its provers run on workers."""

    def provers_running() -> int:
        count = 0
        for container in compose.containers("worker"):
            top = container.top(ps_args="-o pid,stat,comm")
            count += sum(
                1
                for _, stat, command in top.get("Processes") or []
                if command in PROVER_COMMANDS and not stat.startswith("Z")
            )
        return count

    async def solve_and_cancel():
        async with Client.connect(compose.address("dispatcher", 7340)) as client:
            job = await client.solve(
                (REPO / "samples" / "distinct.smt2").read_text(), provers=["z3", "cvc5"]
            )
            solved = await job.result()
            # A cancel once both provers run: a preemption on each end, for certain.
            job = await client.solve(HARD, provers=["cadical", "minisat"])
            solve_id = (await job.status()).solve_id
            # The dispatcher logs a start once the worker reports its process running.
            dispatcher_log.wait_for(
                lambda e: e["event"] == "attempt.started" and e["solve_id"] == solve_id, 2, 30
            )
            assert provers_running() == 2
            await job.cancel("enough")
            return solved, await job.result()

    solved, cancelled = run(solve_and_cancel())
    assert solved.verdict is Verdict.PROVED
    assert cancelled.verdict is Verdict.CANCELLED
    assert provers_running() == 0


def scraped_by_prometheus(compose: Compose) -> None:
    """Prometheus finds every container and their preemption latency. Its scrapes announce
    nothing, so its API is asked until they show, within a deadline."""
    prometheus = f"http://{compose.address('prometheus', 9090)}"

    def targets_up() -> dict[str, int] | None:
        status, body = http_get(f"{prometheus}/api/v1/targets")
        if status != 200:
            return None
        up: dict[str, int] = {}
        for target in json.loads(body)["data"]["activeTargets"]:
            if target["health"] == "up":
                up[target["labels"]["job"]] = up.get(target["labels"]["job"], 0) + 1
        return up if up == {"dispatcher": 1, "worker": WORKERS} else None

    until(targets_up, timeout=90, interval=1)

    def query(expression: str) -> float | None:
        url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        status, body = http_get(url)
        result = json.loads(body)["data"]["result"] if status == 200 else []
        return float(result[0]["value"][1]) if result else None

    # Both ends' preemption latency histograms reach Prometheus.
    for job in ("dispatcher", "worker"):
        expression = f'sum(proofrace_preemption_latency_seconds_count{{job="{job}"}})'
        until(lambda expression=expression: (query(expression) or 0) >= 1, timeout=60, interval=1)


def test_every_container_reports_healthy(compose) -> None:
    for service in ("dispatcher", "worker", "prometheus"):
        for container in compose.containers(service):
            wait_healthy(container)


def test_up_again_keeps_the_count_and_each_worker_runs_one_attempt_per_cpu(compose) -> None:
    compose("up", "-d", "--no-build")
    assert len([w for w in compose.containers("worker") if w.status == "running"]) == WORKERS
    (dispatcher,) = compose.containers("dispatcher")
    log, stream = follow_logs(dispatcher, "dispatcher")
    try:
        registered = log.wait_for(lambda e: e["event"] == "worker.registered", WORKERS, 60)
    finally:
        stream.close()
    # Each worker's share is one CPU (its cgroup's quota), so it offers one slot, however
    # many CPUs the host has: three workers never run more than three provers.
    assert [e["slots"] for e in registered] == [1] * WORKERS


def started_again(container: Any, since: float, timeout: float) -> bool:
    """Whether Docker starts `container` again after `since` (a time.time()) and within
    `timeout` (its event stream, awaited; the API takes whole seconds, the events carry
    nanoseconds)."""
    events = container.client.events(
        decode=True, since=int(since), until=int(time.time() + timeout) + 1,
        filters={"container": container.id, "event": "start"},
    )  # fmt: skip
    try:
        return any(event["timeNano"] > since * 1e9 for event in events)
    finally:
        events.close()


def test_a_worker_whose_process_dies_comes_back_one_docker_killed_stays_down(compose) -> None:
    (dispatcher,) = compose.containers("dispatcher")
    log, stream = follow_logs(dispatcher, "dispatcher")
    try:
        before = len(log.wait_for(lambda e: e["event"] == "worker.registered", WORKERS, 60))
        worker = compose.containers("worker")[0]
        # Its process dies (as in a crash or an OOM kill): `restart: unless-stopped` applies.
        top = worker.top(ps_args="-o pid,comm")
        (pid,) = [int(p) for p, command in top["Processes"] if command == "proofrace"]
        since = time.time()
        os.kill(pid, signal.SIGKILL)
        assert started_again(worker, since, timeout=60)
        log.wait_for(lambda e: e["event"] == "worker.registered", before + 1, 60)
        worker.reload()
        assert worker.attrs["RestartCount"] == 1
        # `docker kill` counts as stopping it by hand: Docker leaves it down, at 137.
        since = time.time()
        worker.kill()
        assert not started_again(worker, since, timeout=5)
        worker.reload()
        assert (worker.status, worker.attrs["State"]["ExitCode"]) == ("exited", 137)
        # The documented way back.
        compose("up", "-d", "--no-build")
        log.wait_for(lambda e: e["event"] == "worker.registered", before + 2, 60)
    finally:
        stream.close()


def test_docker_compose_stop_drains_every_container(compose) -> None:
    # Last in the module: it stops the deployment the others used.
    compose("stop", "--timeout", "30")
    for service, last in (("dispatcher", "server.stopped"), ("worker", "worker.stopped")):
        for container in compose.containers(service):
            container.reload()
            assert container.attrs["State"]["ExitCode"] == 0, container.name
            lines = container.logs(stdout=False, stderr=True).decode().strip().splitlines()
            assert json.loads(lines[-1])["event"] == last
