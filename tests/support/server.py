"""Running a real proofrace server (or worker) in a subprocess and looking at it from outside:
its log lines, its metrics endpoint, its prover processes (found by the environment marker
they carry)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support.processes import marked_processes
from tests.support.prometheus import metric_sum

Event = dict[str, Any]
NO_CACHE = {"PROOFRACE_CACHE": "off", "PROOFRACE_SHARE_RACES": "false"}


class EventLog:
    """JSON log lines as they arrive from a reader thread, and waiting on them by predicate.

    Lines are parsed when looked at, not as they arrive: the reader thread shares the GIL
    with whatever the test or benchmark is doing, and a server logs lines by the thousand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._events: list[Event] = []
        self._other: list[str] = []  # lines that are not JSON (tracebacks, say)
        self._lines: list[str] = []
        self._parsed = 0  # lines already parsed into _events or _other
        self._ended = False
        self._changed = threading.Condition()

    def add(self, lines: list[str]) -> None:
        with self._changed:
            self._lines += lines
            self._changed.notify_all()

    def _parse(self) -> None:
        """Parse the lines that came since the last look (the lock held)."""
        for line in self._lines[self._parsed :]:
            try:
                self._events.append(json.loads(line))
            except json.JSONDecodeError:
                self._other.append(line)
        self._parsed = len(self._lines)

    @property
    def other(self) -> list[str]:
        with self._changed:
            self._parse()
            return list(self._other)

    def end(self) -> None:
        """No more lines will come (the process or its stream is gone)."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def all(self) -> list[Event]:
        with self._changed:
            self._parse()
            return list(self._events)

    def tail(self, count: int) -> list[str]:
        with self._changed:
            return self._lines[-count:]

    def wait_for(
        self, predicate: Callable[[Event], bool], count: int, timeout: float
    ) -> list[Event]:
        """The first `count` events (seen or still to come) satisfying `predicate`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._parse()
                found = [e for e in self._events if predicate(e)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._ended:
                    raise AssertionError(
                        f"{self.name}: expected {count} matching log events, saw {len(found)}; "
                        f"last events: {[e.get('event') for e in self._events[-8:]]}; "
                        f"other output: {self._other[-5:]}"
                    )
                self._changed.wait(remaining)


class RunningServer:
    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, command: str = "serve"
    ) -> None:
        self.log = EventLog(command)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proofrace.cli.main", command, "--log-format", "json", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Every solve runs its own race unless the caller turns the verdict cache and
            # shared races on: a test or benchmark of the race must not be answered by another.
            env={**os.environ, **NO_CACHE, **(env or {})},
        )
        self.pid = self.process.pid
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        role = "worker" if command == "worker" else "server"
        ready = self.wait_for_event(lambda e: e["event"] == f"{role}.ready", timeout=30)
        rpc = ready["rpc"]
        # A worker that only dials out has no address of its own.
        self.address: str = next((a for a in rpc if not a.startswith("unix:")), "")
        self.unix: str | None = next((a for a in rpc if a.startswith("unix:")), None)
        host, _, port = self.address.rpartition(":")
        self.host: str = host
        self.port = int(port or 0)
        self.metrics_port: int = ready["metrics_port"]

    # --- log ---------------------------------------------------------------------------

    def _read_log(self) -> None:
        """Whatever the pipe holds, in one read and one hand-over: the server never waits on a
        full pipe while this thread takes its lines one by one."""
        assert self.process.stderr is not None
        fd, partial = self.process.stderr.fileno(), b""
        while chunk := os.read(fd, 1 << 16):
            *lines, partial = (partial + chunk).split(b"\n")
            self.log.add([text for raw in lines if (text := raw.decode(errors="replace").strip())])
        if partial.strip():
            self.log.add([partial.decode(errors="replace").strip()])
        self.log.end()

    def log_events(self) -> list[Event]:
        return self.log.all()

    def wait_for_event(self, predicate: Callable[[Event], bool], timeout: float = 20) -> Event:
        """The first log event (already seen or still to come) that satisfies `predicate`."""
        return self.wait_for_events(predicate, 1, timeout)[0]

    def wait_for_events(
        self, predicate: Callable[[Event], bool], count: int, timeout: float = 20
    ) -> list[Event]:
        return self.log.wait_for(predicate, count, timeout)

    def events(self, **fields: Any) -> list[Event]:
        """The log events so far whose fields include `fields`."""
        return [e for e in self.log_events() if all(e.get(k) == v for k, v in fields.items())]

    def wait_event(self, timeout: float = 20, **fields: Any) -> Event:
        """The first log event whose fields include `fields`, waiting for it if need be."""
        return self.wait_for_event(lambda e: all(e.get(k) == v for k, v in fields.items()), timeout)

    def cancel_requested(self, solve_id: str, timeout: float = 20) -> Event:
        return self.wait_for_event(
            lambda e: e["event"] == "solve.cancel_requested" and e["solve_id"] == solve_id, timeout
        )

    def solve_finished(self, solve_id: str, timeout: float = 20) -> Event:
        return self.wait_for_event(
            lambda e: e["event"] == "solve.finished" and e["solve_id"] == solve_id, timeout
        )

    # --- metrics -----------------------------------------------------------------------

    def http_get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metrics_text(self) -> str:
        status, body = self.http_get("/metrics")
        assert status == 200
        return body

    def metric(self, name: str, **labels: str) -> float:
        """The sum of every sample named `name` whose labels include `labels`."""
        return metric_sum(self.metrics_text(), name, **labels)

    # --- processes -----------------------------------------------------------------------

    def prover_pids(self) -> list[int]:
        """Live processes started for this server's attempts (zombies excluded)."""
        return marked_processes(f"PROOFRACE_OWNER={self.pid}-")

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def temp_root(self) -> Path:
        roots = list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"proofrace-{self.pid}-*"))
        assert len(roots) == 1, roots
        return roots[0]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code


def event_unix_ns(event: Event) -> int:
    """A log event's stamp as unix nanoseconds (the server writes whole microseconds, UTC)."""
    stamp = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


@contextlib.contextmanager
def running_server(
    args: list[str], env: dict[str, str] | None = None, command: str = "serve"
) -> Iterator[RunningServer]:
    """A server (or, with command="worker", a worker) for the length of a `with` block."""
    server = RunningServer(args, env, command)
    try:
        yield server
    finally:
        server.stop()
