"""The C++ client (client/cpp) against the live server: solve, pipelined cancel, dropped token."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from proofrace.testing import RunningServer

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "client" / "cpp"
BUILD_DIR = CLIENT_DIR / "build"  # gitignored
EASY = str(REPO / "samples" / "distinct.smt2")  # unsat in milliseconds
HARD = str(REPO / "samples" / "pigeonhole-12.smt2")  # z3 and cvc5 run for minutes
CANCELLATIONS = "proofrace_solve_cancellations_total"
GOAL_PREFIX = "proofrace-cpp:"


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


def attempts(out: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """`prover:outcome[/stop cause],...` as {prover: (outcome, stop cause)}."""
    parsed: dict[str, tuple[str, str | None]] = {}
    for item in out["attempts"].split(","):
        prover, _, rest = item.partition(":")
        outcome, _, cause = rest.partition("/")
        parsed[prover] = (outcome, cause or None)
    return parsed


def events(server: RunningServer, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in server.log_events() if all(e.get(k) == v for k, v in fields.items())]


def wait_event(server: RunningServer, **fields: Any) -> dict[str, Any]:
    """The first server log event whose fields include `fields`, waiting for it if need be."""
    return server.wait_for_event(lambda e: all(e.get(k) == v for k, v in fields.items()))


def event_ns(event: dict[str, Any]) -> int:
    """The log stamp as unix nanoseconds (the server writes whole microseconds, UTC)."""
    stamp = datetime.fromisoformat(event["timestamp"])
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


def test_solve_returns_the_proof(server: RunningServer, client_bin: Path) -> None:
    out = run_client(client_bin, "solve", server.address, EASY, "z3", "cvc5")

    assert out["verdict"] == "proved"
    assert out["goal_id"] == GOAL_PREFIX + "distinct.smt2"
    by_prover = attempts(out)
    assert set(by_prover) == {"z3", "cvc5"}
    assert by_prover[out["winner"]] == ("proved", None)
    for outcome, cause in by_prover.values():
        if outcome == "cancelled":
            assert cause == "preempted"
    # result() answers once every attempt is reaped.
    assert not server.prover_pids()
    assert server.solve_finished(out["solve_id"])["verdict"] == "proved"


def test_pipelined_cancel_stops_the_race(server: RunningServer, client_bin: Path) -> None:
    before = server.metric(CANCELLATIONS, cause="client")
    reason = "interop: cancelled before solve returned"

    out = run_client(client_bin, "cancel-pipelined", server.address, HARD, reason, "z3", "cvc5")

    # The cancel went out on the promised token, before solve() had answered.
    assert out["cancel_before_return"] == "true"
    assert out["cancel_state"] in {"cancelling", "finished"}
    assert (out["verdict"], out["cause"], out["message"]) == ("cancelled", "client", reason)
    assert out["winner"] == ""
    assert {outcome for outcome, _ in attempts(out).values()} == {"cancelled"}
    assert set(attempts(out)) == {"z3", "cvc5"}
    # result() answered, so every attempt was reaped: nothing of this server may run.
    assert not server.prover_pids()

    assert server.metric(CANCELLATIONS, cause="client") == before + 1
    wait_event(server, event="solve.cancel_requested", solve_id=out["solve_id"])
    requested = events(server, event="solve.cancel_requested", solve_id=out["solve_id"])
    assert [(e["cause"], e["message"]) for e in requested] == [("client", reason)]


def test_dropped_token_cancels_the_race(server: RunningServer, client_bin: Path) -> None:
    before = server.metric(CANCELLATIONS, cause="tokenDropped")

    out = run_client(client_bin, "drop", server.address, HARD, "z3", "cvc5")

    assert int(out["provers"]) > 0  # the round trip after the drop was answered
    solve_id = out["solve_id"]
    dropped_at, acked_at = int(out["dropped_at_ns"]), int(out["acked_at_ns"])
    requested = wait_event(server, event="solve.cancel_requested", solve_id=solve_id)
    causes = [e["cause"] for e in events(server, event="solve.cancel_requested", solve_id=solve_id)]
    assert causes == ["tokenDropped"]
    # Caused by the drop, not by anything earlier; and handled before the server answered
    # the next call on that connection (stamps are whole microseconds).
    assert event_ns(requested) + 1000 > dropped_at
    assert event_ns(requested) <= acked_at
    # The metric moves in the same step that writes the log line.
    assert server.metric(CANCELLATIONS, cause="tokenDropped") == before + 1

    finished = server.solve_finished(solve_id)
    assert (finished["verdict"], finished["cause"]) == ("cancelled", "tokenDropped")
    # The client dropped the token once every attempt was running: each one was preempted.
    preempted = events(server, event="attempt.preempted", solve_id=solve_id)
    assert sorted(e["prover"] for e in preempted) == ["cvc5", "z3"]
    assert {e["reason"] for e in preempted} == {"tokenDropped"}
    assert not server.prover_pids()
