"""The C++ client (client/cpp) against the live server: solve, pipelined cancel, dropped token."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "client" / "cpp"
BUILD_DIR = CLIENT_DIR / "build"  # gitignored
EASY = str(REPO / "samples" / "distinct.smt2")  # unsat in milliseconds
HARD = str(REPO / "samples" / "pigeonhole-12.smt2")  # z3 and cvc5 run for minutes
CANCELLATIONS = "proofrace_solve_cancellations_total"
GOAL_PREFIX = "proofrace-cpp:"

T = TypeVar("T")


@pytest.fixture(scope="session")
def client_bin() -> Path:
    """Builds build/proofrace-cpp once per session (make rebuilds only what changed)."""
    missing = [t for t in ("capnp", "make", "pkg-config", "c++") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"toolchain missing for the C++ client: {', '.join(missing)}")
    probe = subprocess.run(["pkg-config", "--exists", "capnp-rpc"], capture_output=True)
    if probe.returncode != 0:
        pytest.fail("pkg-config finds no capnp-rpc: install libcapnp-dev")
    proc = subprocess.run(
        ["make", "-C", str(CLIENT_DIR), "-j1", f"BUILD={BUILD_DIR}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"building the C++ client failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return BUILD_DIR / "proofrace-cpp"


def run_client(binary: Path, *args: str, timeout: float = 120) -> dict[str, str]:
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{binary.name} {args} exited {proc.returncode}: {proc.stderr}"
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        out[key] = value
    return out


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """Polls `condition` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def metric(server: Any, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(server.metrics_text()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def events(server: Any, **fields: str) -> list[dict[str, Any]]:
    return [e for e in server.log_events() if all(e.get(k) == v for k, v in fields.items())]


def event_ns(event: dict[str, Any]) -> int:
    stamp = datetime.fromisoformat(event["timestamp"])
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


def test_solve_returns_the_proof(server: Any, client_bin: Path) -> None:
    out = run_client(client_bin, "solve", server.address, EASY, "z3", "cvc5")

    assert out["verdict"] == "proved"
    assert out["winner"] in {"z3", "cvc5"}
    assert out["goal_id"] == GOAL_PREFIX + "distinct.smt2"
    attempts = dict(a.split(":") for a in out["attempts"].split(","))
    assert set(attempts) == {"z3", "cvc5"}
    assert attempts[out["winner"]] == "proved"
    finished = wait_until(
        lambda: events(server, event="solve.finished", solve_id=out["solve_id"]),
        "solve.finished in the server log",
    )
    assert finished[0]["verdict"] == "proved"


def test_pipelined_cancel_stops_the_race(server: Any, client_bin: Path) -> None:
    before = metric(server, CANCELLATIONS, cause="client")
    reason = "interop: cancelled before solve returned"

    out = run_client(client_bin, "cancel-pipelined", server.address, HARD, reason, "z3", "cvc5")

    # The cancel went out on the promised token, before solve() had answered.
    assert out["cancel_before_return"] == "true"
    assert out["cancel_state"] in {"cancelling", "finished"}
    assert out["verdict"] == "cancelled"
    assert out["cause"] == "client"
    assert out["message"] == reason
    assert out["winner"] == ""
    # result() answers only once every attempt is reaped.
    assert not server.prover_pids()

    wait_until(
        lambda: metric(server, CANCELLATIONS, cause="client") > before,
        "proofrace_solve_cancellations_total{cause=client} to go up",
    )
    requested = wait_until(
        lambda: events(server, event="solve.cancel_requested", solve_id=out["solve_id"]),
        "solve.cancel_requested in the server log",
    )
    assert [e["cause"] for e in requested] == ["client"]
    assert requested[0]["message"] == reason


def test_dropped_token_cancels_the_race(server: Any, client_bin: Path) -> None:
    before = metric(server, CANCELLATIONS, cause="tokenDropped")

    out = run_client(client_bin, "drop", server.address, HARD, "z3", "cvc5")

    assert int(out["provers"]) > 0  # the round trip after the drop was answered
    solve_id = out["solve_id"]
    dropped_at_ns = int(out["dropped_at_ns"])

    requested = wait_until(
        lambda: events(server, event="solve.cancel_requested", solve_id=solve_id),
        "solve.cancel_requested after the token was dropped",
    )
    assert [e["cause"] for e in requested] == ["tokenDropped"]
    # Caused by the drop, not by anything earlier (log stamps are whole microseconds).
    assert event_ns(requested[0]) + 1000 > dropped_at_ns
    wait_until(
        lambda: metric(server, CANCELLATIONS, cause="tokenDropped") > before,
        "proofrace_solve_cancellations_total{cause=tokenDropped} to go up",
    )
    # The client waited until an attempt was running, so one was preempted.
    preempted = wait_until(
        lambda: events(server, event="attempt.preempted", solve_id=solve_id),
        "attempt.preempted for the dropped race",
    )
    assert {e["reason"] for e in preempted} == {"tokenDropped"}
    finished = wait_until(
        lambda: events(server, event="solve.finished", solve_id=solve_id),
        "solve.finished for the dropped race",
    )
    assert (finished[0]["verdict"], finished[0]["cause"]) == ("cancelled", "tokenDropped")
    wait_until(lambda: not server.prover_pids(), "every prover process to be reaped")
