"""docker-compose.yml with Debian's docker-compose (v1): `up --scale worker=3` gives a
dispatcher with three workers, Prometheus scrapes all four, and races run through it."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest

import docker
from proofrace.client import Client, Verdict
from tests.support.server import EventLog

from .nodes import (
    IMAGE,
    PROMETHEUS_IMAGE,
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


class Compose:
    def __init__(self) -> None:
        self.project = f"proofrace-test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "PROOFRACE_IMAGE": IMAGE,
            "PROOFRACE_PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
            # Port 0: Docker picks free loopback ports, so a running deployment is no obstacle.
            "PROOFRACE_BIND": "127.0.0.1",
            "PROOFRACE_RPC_PORT": "0",
            "PROOFRACE_METRICS_PORT": "0",
            "PROOFRACE_PROMETHEUS_PORT": "0",
            "PROOFRACE_WORKER_SECRET": "the compose test's worker credential",
        }

    def __call__(self, *args: str, timeout: float = 120) -> str:
        command = ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "-p", self.project]
        done = subprocess.run(
            [*command, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stderr[-2000:]}"
        return done.stdout

    def address(self, service: str, port: int) -> str:
        _, _, mapped = self("port", service, str(port)).strip().rpartition(":")
        return f"127.0.0.1:{mapped}"

    def containers(self, service: str) -> list[docker.models.containers.Container]:
        labels = [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}",
        ]
        return docker.from_env().containers.list(all=True, filters={"label": labels})


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    deployment = Compose()
    try:
        deployment("up", "-d", "--no-build", "--scale", f"worker={WORKERS}")
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


def test_docker_compose_stop_drains_every_container(compose) -> None:
    # Last in the module: it stops the deployment the others used.
    compose("stop", "--timeout", "30")
    for service, last in (("dispatcher", "server.stopped"), ("worker", "worker.stopped")):
        for container in compose.containers(service):
            container.reload()
            assert container.attrs["State"]["ExitCode"] == 0, container.name
            lines = container.logs(stdout=False, stderr=True).decode().strip().splitlines()
            assert json.loads(lines[-1])["event"] == last
