"""The Rust client (client/rust) against the live server.

Covers a plain solve, a cancel pipelined on the token before solve() answers, a dropped
handle (the server must cancel with `tokenDropped`), a cancel on a running race, and the
crate's own `cargo test` suite: its tests that need no special server use this one, the others
(login, TLS, idle timeout, restarts, the host's eight cases) start their own from the same
installation. Drop and cancel latencies are measured against the server's log stamps and
printed (run pytest with -s to see them). The example binary runs on a multi-threaded tokio
runtime, as the echidna host does.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import event_unix_ns

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
CRATE = REPO / "client" / "rust"
EASY = str(REPO / "samples" / "distinct.smt2")  # unsat in milliseconds
REFUTABLE = str(REPO / "samples" / "satisfiable.smt2")  # sat in milliseconds
HARD = str(REPO / "samples" / "pigeonhole-12.smt2")  # z3 and cvc5 run for minutes
HARD_PROVERS = ("--prover", "z3", "--prover", "cvc5")
CANCELLATIONS = "proofrace_solve_cancellations_total"
# Drops and cancels measured per test: enough for a median without slowing the suite.
ROUNDS = 5


@dataclass(frozen=True)
class RustBuild:
    cargo: str
    env: dict[str, str]
    example: Path


@pytest.fixture(scope="session")
def rust() -> RustBuild:
    """Builds the example and the crate's tests once per session.

    The target directory defaults to ~/.cache/proofrace/rust-target so that later runs on
    the same machine (CI included) only rebuild what changed.
    """
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        pytest.fail("cargo is missing: the Rust client cannot be built (install rustup's stable)")
    if shutil.which("capnp") is None:
        pytest.fail("the capnp compiler is missing: apt-get install capnproto")
    target = Path(
        os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "proofrace" / "rust-target")
    )
    # The crate's own live tests start servers of their own from this installation.
    proofrace = shutil.which("proofrace") or str(Path(sys.executable).parent / "proofrace")
    env = {**os.environ, "CARGO_TARGET_DIR": str(target), "PROOFRACE_BIN": proofrace}
    # -j 2: the machines have two cores and other clients may be building beside us.
    for step in (
        ["build", "--locked", "-j", "2", "--examples"],
        ["test", "--locked", "-j", "2", "--features", "serde", "--no-run"],
    ):
        proc = subprocess.run(
            [cargo, *step], cwd=CRATE, env=env, capture_output=True, text=True, timeout=1800
        )
        if proc.returncode != 0:
            pytest.fail(f"cargo {' '.join(step)} failed:\n{proc.stderr[-6000:]}")
    return RustBuild(cargo, env, target / "debug" / "examples" / "proofrace-solve")


def solve(rust: RustBuild, server: Any, problem: str, *args: str) -> list[dict[str, Any]]:
    """Runs proofrace-solve --json and returns its JSON lines."""
    proc = subprocess.run(
        [str(rust.example), problem, "--addr", server.address, "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"proofrace-solve {args} exited {proc.returncode}: {proc.stderr}"
    return [json.loads(line) for line in proc.stdout.splitlines()]


def only(lines: list[dict[str, Any]], event: str) -> dict[str, Any]:
    found = [line for line in lines if line["event"] == event]
    assert len(found) == 1, f"want one {event!r} line in {lines}"
    return found[0]


def report(what: str, samples_ms: list[float]) -> str:
    line = (
        f"rust client, {what}: median {statistics.median(samples_ms):.3f} ms, "
        f"min {min(samples_ms):.3f}, max {max(samples_ms):.3f} (n={len(samples_ms)})"
    )
    print(line)
    return line


def test_the_crate_carries_the_schema_unchanged() -> None:
    """The crate compiles its own copy (so that it can be packaged): it must be the contract."""
    copy = CRATE / "schema" / "proofrace.capnp"
    assert copy.read_bytes() == (REPO / "schemas" / "proofrace.capnp").read_bytes(), (
        f"{copy} differs from schemas/proofrace.capnp: copy it over"
    )


def test_solve_prints_the_proof(server: Any, rust: RustBuild) -> None:
    lines = solve(rust, server, EASY, "--goal-id", "rust-easy", "--timeout-ms", "4500")

    outcome = only(lines, "outcome")
    assert outcome["verdict"] == "proved"
    assert outcome["host_outcome"] == "proved"
    assert outcome["deadline_ms"] == 4500  # the deadline that applied, as the server filled it
    assert outcome["goal_id"] == "rust-easy"
    assert outcome["winner"], "a proved race names its winner"
    by_prover = {a["prover"]: a for a in outcome["attempts"]}
    assert by_prover[outcome["winner"]]["outcome"] == "proved"
    for attempt in outcome["attempts"]:
        if attempt["outcome"] == "cancelled":
            assert attempt["stop"]["reason"]["cause"] == "preempted"
            assert attempt["host_outcome"].startswith("cancelled (preempted")
    # result() answers once every attempt is reaped.
    assert not server.prover_pids()
    assert server.solve_finished(outcome["solve_id"])["verdict"] == "proved"


def test_refutation_maps_to_no_proof_found(server: Any, rust: RustBuild) -> None:
    outcome = only(solve(rust, server, REFUTABLE, "--prover", "z3"), "outcome")

    assert outcome["verdict"] == "refuted"
    assert outcome["winner"] == "z3"
    # The host reads `sat` of the negated goal as "not proved".
    assert outcome["host_outcome"] == "noProofFound"
    assert outcome["attempts"][0]["answer"] == "refuted"


def test_pipelined_cancel_stops_the_race(server: Any, rust: RustBuild) -> None:
    before = server.metric(CANCELLATIONS, cause="client")
    reason = "rust interop: cancelled on the pipelined token"

    lines = solve(rust, server, HARD, *HARD_PROVERS, "--cancel-pipelined", reason)

    cancelled = only(lines, "cancelled")
    assert cancelled["state"] in {"cancelling", "finished"}
    assert cancelled["cancel_reason"] == {"cause": "client", "message": reason}
    outcome = only(lines, "outcome")
    assert outcome["solve_id"] == cancelled["solve_id"]
    assert outcome["verdict"] == "cancelled"
    assert outcome["cancel_reason"] == {"cause": "client", "message": reason}
    assert outcome["winner"] is None
    assert outcome["host_outcome"] == f"cancelled (client: {reason})"
    assert {a["prover"] for a in outcome["attempts"]} == {"z3", "cvc5"}
    assert {a["outcome"] for a in outcome["attempts"]} == {"cancelled"}
    # result() answered, so every attempt was reaped: nothing of this server may run.
    assert not server.prover_pids()

    assert server.metric(CANCELLATIONS, cause="client") == before + 1
    server.wait_event(event="solve.cancel_requested", solve_id=outcome["solve_id"])
    requested = server.events(event="solve.cancel_requested", solve_id=outcome["solve_id"])
    assert [(e["cause"], e["message"]) for e in requested] == [("client", reason)]


def test_dropped_handle_cancels_the_race(
    server: Any, rust: RustBuild, record_property: Callable[[str, object], None]
) -> None:
    to_request: list[float] = []
    to_reaped: list[float] = []
    for _ in range(ROUNDS):
        before = server.metric(CANCELLATIONS, cause="tokenDropped")

        lines = solve(rust, server, HARD, *HARD_PROVERS, "--drop-after-running")

        running = only(lines, "running")
        assert running["attempts"] == 2
        dropped = only(lines, "dropped")
        solve_id = dropped["solve_id"]
        assert solve_id == running["solve_id"]
        server.wait_event(event="solve.cancel_requested", solve_id=solve_id)
        requested = server.events(event="solve.cancel_requested", solve_id=solve_id)
        assert [e["cause"] for e in requested] == ["tokenDropped"]
        assert server.metric(CANCELLATIONS, cause="tokenDropped") == before + 1
        # Caused by the drop, not by anything earlier; and requested before the server
        # answered the client's next call on that connection (stamps are whole microseconds).
        assert event_unix_ns(requested[0]) + 1000 > dropped["dropped_unix_ns"]
        assert event_unix_ns(requested[0]) <= dropped["acked_unix_ns"]

        finished = server.solve_finished(solve_id)
        assert (finished["verdict"], finished["cause"]) == ("cancelled", "tokenDropped")
        # Every attempt was running when the handle went, so each one was preempted.
        preempted = server.events(event="attempt.preempted", solve_id=solve_id)
        assert sorted(e["prover"] for e in preempted) == ["cvc5", "z3"]
        assert {e["reason"] for e in preempted} == {"tokenDropped"}
        assert not server.prover_pids()

        to_request.append((event_unix_ns(requested[0]) - dropped["dropped_unix_ns"]) / 1e6)
        to_reaped.append((event_unix_ns(finished) - dropped["dropped_unix_ns"]) / 1e6)

    record_property(
        "drop_to_cancel_requested_ms", report("drop -> solve.cancel_requested", to_request)
    )
    record_property("drop_to_finished_ms", report("drop -> solve.finished (all reaped)", to_reaped))


def test_cancel_of_a_running_race_reaps_everything(
    server: Any, rust: RustBuild, record_property: Callable[[str, object], None]
) -> None:
    to_finished: list[float] = []
    to_result: list[float] = []
    stop_latency: list[float] = []
    for i in range(ROUNDS):
        reason = f"rust interop: cancel #{i} of a running race"
        before = server.metric(CANCELLATIONS, cause="client")

        lines = solve(rust, server, HARD, *HARD_PROVERS, "--cancel-after-running", reason)

        assert only(lines, "running")["attempts"] == 2
        outcome = only(lines, "outcome")
        assert outcome["verdict"] == "cancelled"
        assert outcome["cancel_reason"] == {"cause": "client", "message": reason}
        for attempt in outcome["attempts"]:
            assert attempt["outcome"] == "cancelled"
            assert attempt["stop"]["reason"]["cause"] == "client"
            assert attempt["exit"] != "notStarted"
            stop_latency.append(attempt["stop"]["latency_us"] / 1e3)
        assert not server.prover_pids()
        assert server.metric(CANCELLATIONS, cause="client") == before + 1

        finished = server.solve_finished(outcome["solve_id"])
        sent = only(lines, "cancelled")["cancel_sent_unix_ns"]
        to_finished.append((event_unix_ns(finished) - sent) / 1e6)
        to_result.append((only(lines, "result")["result_unix_ns"] - sent) / 1e6)

    record_property(
        "cancel_to_finished_ms", report("cancel -> solve.finished (all reaped)", to_finished)
    )
    record_property("cancel_to_result_ms", report("cancel -> result() answered", to_result))
    record_property("stop_latency_ms", report("server's stop latency per attempt", stop_latency))


def test_cargo_test_against_this_server(server: Any, rust: RustBuild) -> None:
    env = {
        **rust.env,
        "PROOFRACE_ADDR": server.address,
        "PROOFRACE_METRICS_URL": f"http://127.0.0.1:{server.metrics_port}/metrics",
    }
    proc = subprocess.run(
        [rust.cargo, "test", "--locked", "-j", "2", "--features", "serde"],
        cwd=CRATE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"cargo test failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    results = [line for line in proc.stdout.splitlines() if line.startswith("test result:")]
    # unit tests, connection, host_cases, live_server, doc tests
    assert len(results) >= 5 and all(" 0 failed" in line for line in results), results
    assert not server.prover_pids()


def test_dropping_every_client_and_handle_closes_the_connection(
    own_server: Any, rust: RustBuild
) -> None:
    """The server sees the drop itself (not the process exiting): the connection closes and
    the race is cancelled while the client's process still lives."""
    client = subprocess.Popen(
        [str(rust.example), HARD, "--addr", own_server.address, "--json", *HARD_PROVERS,
         "--drop-all-after-running"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert client.stdout is not None
        lines: list[dict[str, Any]] = []
        while not lines or lines[-1]["event"] != "dropped":
            line = client.stdout.readline()
            assert line, f"proofrace-solve ended early: {lines}"
            lines.append(json.loads(line))
        solve_id = only(lines, "dropped")["solve_id"]

        finished = own_server.solve_finished(solve_id)
        assert finished["verdict"] == "cancelled"
        # The release and the close leave together: either may be what ended the race.
        assert finished["cause"] in {"tokenDropped", "disconnected"}
        own_server.wait_event(event="connection.closed")
        assert own_server.metric("proofrace_connections") == 0
        assert not own_server.prover_pids()
        assert client.poll() is None, "the server saw the drop, not the process exiting"
    finally:
        if client.stdin is not None:
            client.stdin.close()
        client.wait(timeout=30)
