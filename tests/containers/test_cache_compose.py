"""docker-compose.yml with docker-compose.cache.yml, brought up with Debian's docker-compose
(v1): two dispatchers share one verdict store on Redis. A goal decided behind `dispatcher` is
answered by `dispatcher-b` from the store, with no prover started there; a `bypass` request to
`dispatcher-b` races afresh."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import docker
from proofrace.client import CachePolicy, Client, SolveOutcome, Source, Verdict
from tests.support.prometheus import metric_sum
from tests.support.server import EventLog

from .nodes import IMAGE, PROMETHEUS_IMAGE, REPO, follow_logs, http_get

T = TypeVar("T")
Run = Callable[[Awaitable[T]], T]

REDIS_IMAGE = os.environ.get("PROOFRACE_REDIS_IMAGE", "proofrace-redis:latest")
FILES = ("docker-compose.yml", "docker-compose.cache.yml")
GOAL = (REPO / "samples" / "distinct.smt2").read_text()
PROVERS = ["z3", "cvc5"]
RPC, METRICS = 7340, 7341
PUBLISHED = [
    f"PROOFRACE_{port}"
    for port in ("RPC_PORT", "METRICS_PORT", "PROMETHEUS_PORT", "RPC_PORT_B", "METRICS_PORT_B")
]
# The base file's default: the first dispatcher runs nothing itself.
WORKERS = 2


class Deployment:
    """One compose project of its own, on loopback ports Docker picks."""

    def __init__(self) -> None:
        self.project = f"proofrace-cache-test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "PROOFRACE_IMAGE": IMAGE,
            "PROOFRACE_PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
            "PROOFRACE_REDIS_IMAGE": REDIS_IMAGE,
            "PROOFRACE_BIND": "127.0.0.1",
            "PROOFRACE_WORKER_SECRET": "the cache compose test's worker credential",
            # Port 0: Docker picks free loopback ports, so a running deployment is no obstacle.
            **dict.fromkeys(PUBLISHED, "0"),
        }
        self.logs: dict[str, EventLog] = {}
        self._streams: list[Any] = []

    def __call__(self, *args: str, timeout: float = 180) -> str:
        files = [option for name in FILES for option in ("-f", str(REPO / name))]
        done = subprocess.run(
            ["docker-compose", *files, "-p", self.project, *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stderr[-2000:]}"
        return done.stdout

    def address(self, service: str, port: int) -> str:
        _, _, mapped = self("port", service, str(port)).strip().rpartition(":")
        return f"127.0.0.1:{mapped}"

    def follow(self, service: str) -> EventLog:
        """The service's log from its start on, followed as it grows."""
        (container,) = docker.from_env().containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    f"com.docker.compose.service={service}",
                ]
            },
        )
        log, stream = follow_logs(container, service)
        self.logs[service] = log
        self._streams.append(stream)
        return log

    def metrics(self, service: str) -> str:
        status, body = http_get(f"http://{self.address(service, METRICS)}/metrics")
        assert status == 200, f"{service}: /metrics answered {status}"
        return body

    def describe(self) -> str:
        return "\n".join(
            "\n".join([f"--- {service}", *log.tail(15)]) for service, log in self.logs.items()
        )

    def close(self) -> None:
        for stream in self._streams:
            with contextlib.suppress(Exception):
                stream.close()


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    running = Deployment()
    try:
        running("up", "-d", "--no-build")
        yield running
    finally:
        running.close()
        running("down", "--volumes", "--timeout", "30")


@contextlib.contextmanager
def explained(deployment: Deployment) -> Iterator[None]:
    """A failure carries the last lines of the dispatchers' logs."""
    try:
        yield
    except BaseException as error:
        error.add_note(f"the dispatchers, last lines of their logs:\n{deployment.describe()}")
        raise


def solve(address: str, run: Run[SolveOutcome], cache: CachePolicy) -> SolveOutcome:
    async def main() -> SolveOutcome:
        async with Client.connect(address) as client:
            job = await client.solve(GOAL, provers=PROVERS, cache=cache)
            return await job.result()

    return run(main())


def counters(metrics: str) -> dict[str, float]:
    names = ["cache_hits_total", "cache_misses_total", "attempts_total", "attempts_in_flight"]
    return {name: metric_sum(metrics, f"proofrace_{name}") for name in names}


def test_a_verdict_found_behind_one_dispatcher_is_answered_by_the_other(
    deployment: Deployment, run: Run[SolveOutcome]
) -> None:
    a, b = deployment.follow("dispatcher"), deployment.follow("dispatcher-b")
    with explained(deployment):
        # Both opened the shared store: a store that failed to open would leave a dispatcher
        # serving without any cache (`cache.unavailable`).
        for log in (a, b):
            (opened,) = log.wait_for(
                lambda e: e["event"] in ("cache.ready", "cache.unavailable"), 1, timeout=90
            )
            assert (opened["event"], opened["store"]) == ("cache.ready", "redis")
            log.wait_for(lambda e: e["event"] == "server.ready", 1, timeout=90)
        a.wait_for(lambda e: e["event"] == "worker.registered", WORKERS, timeout=90)

        # Dispatcher A races the goal on its workers and stores the verdict.
        found = solve(deployment.address("dispatcher", RPC), run, CachePolicy.USE)
        assert (found.verdict, found.source) == (Verdict.PROVED, Source.RACE)
        assert found.winner in PROVERS and found.attempts
        a.wait_for(
            lambda e: e["event"] == "cache.stored" and e["solve_id"] == found.solve_id,
            1, timeout=30,
        )  # fmt: skip

        # Dispatcher B answers the same goal from the store: found by A's winner in A's solve,
        # and nothing ran.
        before = counters(deployment.metrics("dispatcher-b"))
        b_address = deployment.address("dispatcher-b", RPC)
        cached = solve(b_address, run, CachePolicy.USE)
        assert (cached.verdict, cached.source) == (Verdict.PROVED, Source.CACHE)
        assert cached.solve_id != found.solve_id
        assert cached.cached is not None
        assert (cached.cached.found_by, cached.cached.solve_id) == (found.winner, found.solve_id)
        assert (cached.winner, cached.grounds) == (found.winner, found.grounds)
        assert cached.attempts == ()
        (hit,) = b.wait_for(
            lambda e: e["event"] == "solve.cached" and e["solve_id"] == cached.solve_id,
            1, timeout=30,
        )  # fmt: skip
        assert (hit["found_by"], hit["found_in"]) == (found.winner, found.solve_id)
        after_hit = counters(deployment.metrics("dispatcher-b"))
        assert after_hit["cache_hits_total"] == before["cache_hits_total"] + 1
        assert after_hit["cache_misses_total"] == before["cache_misses_total"]
        assert after_hit["attempts_total"] == before["attempts_total"]
        assert after_hit["attempts_in_flight"] == 0

        # `bypass` on B neither reads the store nor trusts it: a race of B's own provers.
        fresh = solve(b_address, run, CachePolicy.BYPASS)
        assert (fresh.verdict, fresh.source) == (Verdict.PROVED, Source.RACE)
        assert fresh.cached is None and fresh.winner in PROVERS
        assert sorted(attempt.prover for attempt in fresh.attempts) == sorted(PROVERS)
        b.wait_for(
            lambda e: e["event"] == "solve.finished" and e["solve_id"] == fresh.solve_id,
            1, timeout=30,
        )  # fmt: skip
        # B's log is in order: the bypass race's last line came after every line of the hit,
        # so every prover B ever started is in this log, and all were the bypass race's.
        started = [(e["solve_id"], e["prover"]) for e in b.all() if e["event"] == "attempt.started"]
        assert (fresh.solve_id, fresh.winner) in started
        assert {solve_id for solve_id, _ in started} == {fresh.solve_id}
        after_race = counters(deployment.metrics("dispatcher-b"))
        assert after_race["cache_hits_total"] == after_hit["cache_hits_total"]
        assert after_race["cache_misses_total"] == after_hit["cache_misses_total"]
        assert after_race["attempts_total"] == after_hit["attempts_total"] + len(fresh.attempts)
