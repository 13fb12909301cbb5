"""The C++ (client/cpp) and Go (client/go) smoke clients against the live server: solve,
pipelined cancel, dropped token. Both print the same key=value lines, so one set of tests
checks both; each language only has its own build."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import RunningServer, event_unix_ns

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
EASY = str(REPO / "samples" / "distinct.smt2")  # unsat in milliseconds
HARD = str(REPO / "samples" / "pigeonhole-12.smt2")  # z3 and cvc5 run for minutes
CANCELLATIONS = "proofrace_solve_cancellations_total"


def _make(language: str, directory: Path, args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(
        ["make", "-C", str(directory), *args], capture_output=True, text=True, env=env, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(
            f"building the {language} client failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )


def _require(language: str, tools: tuple[str, ...]) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"toolchain missing for the {language} client: {', '.join(missing)}")


def build_cpp() -> Path:
    """build/proofrace-cpp (gitignored; make rebuilds only what changed)."""
    _require("C++", ("capnp", "make", "pkg-config", "c++"))
    if subprocess.run(["pkg-config", "--exists", "capnp-rpc"], check=False).returncode != 0:
        pytest.fail("pkg-config finds no capnp-rpc: install libcapnp-dev")
    directory = REPO / "client" / "cpp"
    _make("C++", directory, ["-j1", f"BUILD={directory / 'build'}"], dict(os.environ))
    return directory / "build" / "proofrace-cpp"


def build_go() -> Path:
    """bin/proofrace-go; the Go module cache is reused between runs."""
    _require("Go", ("go", "capnp", "make"))
    # GOTOOLCHAIN=local: never try to download another Go toolchain (offline CI).
    directory = REPO / "client" / "go"
    _make("Go", directory, [], {**os.environ, "GOTOOLCHAIN": "local"})
    return directory / "bin" / "proofrace-go"


@pytest.fixture(scope="session", params=["cpp", "go"])
def smoke_client(request: pytest.FixtureRequest) -> tuple[Path, str]:
    """The built client and the goal-id prefix it uses, once per language per session."""
    binary = build_cpp() if request.param == "cpp" else build_go()
    return binary, f"proofrace-{request.param}:"


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


def test_solve_returns_the_proof(server: RunningServer, smoke_client: tuple[Path, str]) -> None:
    client_bin, goal_prefix = smoke_client
    out = run_client(client_bin, "solve", server.address, EASY, "z3", "cvc5")

    assert out["verdict"] == "proved"
    assert out["goal_id"] == goal_prefix + "distinct.smt2"
    by_prover = attempts(out)
    assert set(by_prover) == {"z3", "cvc5"}
    assert by_prover[out["winner"]] == ("proved", None)
    for outcome, cause in by_prover.values():
        if outcome == "cancelled":
            assert cause == "preempted"
    # result() answers once every attempt is reaped.
    assert not server.prover_pids()
    assert server.solve_finished(out["solve_id"])["verdict"] == "proved"


def test_pipelined_cancel_stops_the_race(
    server: RunningServer, smoke_client: tuple[Path, str]
) -> None:
    client_bin, _ = smoke_client
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
    server.wait_event(event="solve.cancel_requested", solve_id=out["solve_id"])
    requested = server.events(event="solve.cancel_requested", solve_id=out["solve_id"])
    assert [(e["cause"], e["message"]) for e in requested] == [("client", reason)]


def test_dropped_token_cancels_the_race(
    server: RunningServer, smoke_client: tuple[Path, str]
) -> None:
    client_bin, _ = smoke_client
    before = server.metric(CANCELLATIONS, cause="tokenDropped")

    out = run_client(client_bin, "drop", server.address, HARD, "z3", "cvc5")

    assert int(out["provers"]) > 0  # the round trip after the drop was answered
    solve_id = out["solve_id"]
    dropped_at, acked_at = int(out["dropped_at_ns"]), int(out["acked_at_ns"])
    requested = server.wait_event(event="solve.cancel_requested", solve_id=solve_id)
    causes = [e["cause"] for e in server.events(event="solve.cancel_requested", solve_id=solve_id)]
    assert causes == ["tokenDropped"]
    # Caused by the drop, not by anything earlier; and handled before the server answered
    # the next call on that connection (stamps are whole microseconds).
    assert event_unix_ns(requested) + 1000 > dropped_at
    assert event_unix_ns(requested) <= acked_at
    # The metric moves in the same step that writes the log line.
    assert server.metric(CANCELLATIONS, cause="tokenDropped") == before + 1

    finished = server.solve_finished(solve_id)
    assert (finished["verdict"], finished["cause"]) == ("cancelled", "tokenDropped")
    # The client dropped the token once every attempt was running: each one was preempted.
    preempted = server.events(event="attempt.preempted", solve_id=solve_id)
    assert sorted(e["prover"] for e in preempted) == ["cvc5", "z3"]
    assert {e["reason"] for e in preempted} == {"tokenDropped"}
    assert not server.prover_pids()
