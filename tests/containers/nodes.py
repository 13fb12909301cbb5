"""proofrace containers seen from outside: started with testcontainers on a Docker network,
watched through `docker logs` (followed, not polled), their /metrics endpoint on a loopback
port, and `docker top` for the prover processes inside them."""

from __future__ import annotations

import contextlib
import datetime
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

import docker
from proofrace.client import Client, SolveOutcome, Strategy
from tests.support.prometheus import metric_sum
from tests.support.server import EventLog

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("PROOFRACE_IMAGE", "proofrace:latest")
PROMETHEUS_IMAGE = os.environ.get("PROOFRACE_PROMETHEUS_IMAGE", "proofrace-prometheus:latest")
RPC_PORT, METRICS_PORT, WORKER_METRICS_PORT = 7340, 7341, 7343
# Executables of the Debian provers in the image, as `ps` names them.
# The provers the image runs, and the sandbox launcher each one starts as (it becomes the prover
# by exec, so for an instant after `attempt.started` the process is still named for it).
PROVER_COMMANDS = {"proofrace-jail", "z3", "cvc5", "cadical", "minisat", "eprover", "SPASS"}

Event = dict[str, Any]


class Node:
    """One running proofrace container (dispatcher or worker)."""

    def __init__(self, container: DockerContainer, name: str, metrics_port: int) -> None:
        self.container = container
        self.name = name
        self.wrapped = container.get_wrapped_container()
        self.metrics_port = metrics_port
        self.log, self._stream = follow_logs(self.wrapped, name)

    # --- log -------------------------------------------------------------------------------

    def events(self, event: str | None = None) -> list[Event]:
        return [e for e in self.log.all() if event is None or e.get("event") == event]

    def wait_for_events(
        self, predicate: Callable[[Event], bool], count: int = 1, timeout: float = 30
    ) -> list[Event]:
        return self.log.wait_for(predicate, count, timeout)

    def wait_for_event(self, predicate: Callable[[Event], bool], timeout: float = 30) -> Event:
        return self.wait_for_events(predicate, 1, timeout)[0]

    def wait_for(self, event: str, count: int = 1, timeout: float = 30) -> list[Event]:
        return self.wait_for_events(lambda e: e.get("event") == event, count, timeout)

    # --- HTTP ------------------------------------------------------------------------------

    def http_get(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.metrics_port}{path}")

    def metric(self, name: str, **labels: str) -> float:
        status, body = self.http_get("/metrics")
        assert status == 200, f"{self.name}: /metrics answered {status}"
        return metric_sum(body, name, **labels)

    # --- processes and state ---------------------------------------------------------------

    def processes(self) -> list[dict[str, str]]:
        """Live processes in the container (zombies excluded), as `docker top` sees them."""
        top = self.wrapped.top(ps_args="-o pid,uid,stat,comm")
        titles = [t.lower() for t in top["Titles"]]
        rows = [dict(zip(titles, row, strict=False)) for row in top.get("Processes") or []]
        return [r for r in rows if not r["stat"].startswith("Z")]

    def provers(self) -> list[dict[str, str]]:
        return [p for p in self.processes() if p["command"] in PROVER_COMMANDS]

    def wait_healthy(self, timeout: float = 60) -> None:
        wait_healthy(self.wrapped, timeout)

    def state(self) -> dict[str, Any]:
        self.wrapped.reload()
        return dict(self.wrapped.attrs["State"])

    def describe(self, lines: int = 12) -> str:
        try:
            state = self.state()
            status = f"{state['Status']} (exit code {state['ExitCode']})"
        except docker.errors.DockerException as error:
            status = str(error)
        return "\n".join([f"--- {self.name}: {status}", *self.log.tail(lines)])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()


def follow_logs(container: Any, name: str) -> tuple[EventLog, Any]:
    """A container's stderr, followed (not polled) into an EventLog by a reader thread."""
    log = EventLog(name)
    stream = container.logs(stream=True, follow=True, stdout=False, stderr=True)

    def follow() -> None:
        pending = b""
        try:
            for chunk in stream:
                pending += chunk
                *raw_lines, pending = pending.split(b"\n")
                log.add([raw.decode(errors="replace").strip() for raw in raw_lines])
        except Exception:  # the stream is closed under us at teardown
            pass
        finally:
            log.end()

    threading.Thread(target=follow, daemon=True).start()
    return log, stream


def wait_healthy(container: Any, timeout: float = 60) -> None:
    """Until Docker's health check reports the container healthy: awaited on Docker's event
    stream, replayed from the container's creation so an earlier report is not missed."""
    container.reload()
    created = container.attrs["Created"]
    since = int(
        datetime.datetime.fromisoformat(created[:19]).replace(tzinfo=datetime.UTC).timestamp()
    )
    events = container.client.events(
        decode=True,
        since=since,
        until=int(time.time() + timeout),
        filters={"container": container.id, "event": "health_status"},
    )
    try:
        for event in events:
            if event.get("status") == "health_status: healthy":
                return
    finally:
        events.close()
    raise AssertionError(f"{container.name} never reported healthy within {timeout} s")


def until(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy, within a deadline: only for what no
    event announces (Prometheus's scrapes of its targets)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(interval)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def loopback_port(container: DockerContainer, port: int) -> int:
    bindings = container.get_wrapped_container().client.api.port(container.get_container_id(), port)
    return int(bindings[0]["HostPort"])


# Clusters still running, so that a failing test's report can show their logs.
ACTIVE: list[Cluster] = []


class Cluster:
    """A dispatcher and workers on their own Docker network. Workers dial the dispatcher by its
    network alias; the host reaches the RPC and metrics ports on loopback only."""

    def __init__(self) -> None:
        self.network = Network()
        self.network.create()
        self._containers: list[DockerContainer] = []
        self.nodes: list[Node] = []
        ACTIVE.append(self)

    def describe(self) -> str:
        return "\n".join(node.describe() for node in self.nodes)

    def _start(
        self,
        command: list[str],
        name: str,
        metrics_port: int,
        env: dict[str, str],
        files: dict[str, str],
        alias: str | None = None,
        rpc: bool = False,
    ) -> tuple[DockerContainer, Node]:
        container = DockerContainer(IMAGE).with_command(command).with_network(self.network)
        if alias:
            container.with_network_aliases(alias)
        # Loopback only, on a port Docker picks.
        for port in [metrics_port, *([RPC_PORT] if rpc else [])]:
            container.ports[f"{port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        container.with_env("PROOFRACE_GRACE_S", "0.3")
        # Dispatcher and workers share the workers' credential (the role is not a client's).
        container.with_env("PROOFRACE_WORKER_SECRET", "the cluster tests' worker credential")
        for key, value in env.items():
            container.with_env(key, value)
        for path, text in files.items():
            container.with_copy_into_container(text.encode(), path)
        self._containers.append(container)
        container.start()
        node = Node(container, name, loopback_port(container, metrics_port))
        self.nodes.append(node)
        return container, node

    def dispatcher(
        self, *args: str, env: dict[str, str] | None = None, files: dict[str, str] | None = None
    ) -> Node:
        # The test network is private: plain TCP there is a deliberate choice.
        env = {"PROOFRACE_INSECURE_TCP": "true", **(env or {})}
        container, node = self._start(
            ["serve", *args], "dispatcher", METRICS_PORT, env or {}, files or {},
            alias="dispatcher", rpc=True,
        )  # fmt: skip
        node.wait_for("server.ready")
        self.address = f"127.0.0.1:{loopback_port(container, RPC_PORT)}"
        return node

    def worker(
        self, name: str, *args: str, env: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
    ) -> Node:  # fmt: skip
        environment = {"PROOFRACE_DISPATCHER": f"dispatcher:{RPC_PORT}", "PROOFRACE_NAME": name}
        _, node = self._start(
            ["worker", *args], name, WORKER_METRICS_PORT, {**environment, **(env or {})},
            files or {},
        )  # fmt: skip
        node.wait_for("worker.registered")
        return node

    def close(self) -> None:
        if self in ACTIVE:
            ACTIVE.remove(self)
        for node in self.nodes:
            node.close()
        for container in reversed(self._containers):
            with contextlib.suppress(Exception):
                container.stop()
        with contextlib.suppress(Exception):
            self.network.remove()


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    running = Cluster()
    try:
        yield running
    except BaseException as error:
        error.add_note(f"the containers, last lines of their logs:\n{running.describe()}")
        raise
    finally:
        running.close()


def engine() -> docker.DockerClient:
    return docker.from_env()


def solve_hardened(address: str, secrets: Path, problem: str) -> Any:
    """A coroutine: `problem` solved by z3 and cvc5 (strategy all) as a client of a hardened
    deployment does, with the CA and the login that deploy/make-secrets.sh wrote to `secrets`."""

    async def solve() -> SolveOutcome:
        tls = ssl.create_default_context(cafile=str(secrets / "ca.crt"))
        credential = (secrets / "login").read_text().strip()
        async with Client.connect(address, credential=credential, tls=tls) as client:
            job = await client.solve(problem, provers=["z3", "cvc5"], strategy=Strategy.ALL)
            return await job.result()

    return solve()
