"""The `proofrace` command against a live server."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys

from harness import REPO, SAMPLES, RunningServer


def proofrace(*args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "proofrace.cli.main", *args],
        cwd=REPO,
        text=True,
        **popen,  # type: ignore[call-overload]
    )


def test_solve_prints_the_verdict_and_every_attempt(server: RunningServer) -> None:
    cli = proofrace(
        "solve", str(SAMPLES / "distinct.smt2"), "--addr", server.address, stdout=subprocess.PIPE
    )
    out, _ = cli.communicate(timeout=60)
    assert cli.returncode == 0
    assert out.startswith("verdict: proved (winner: ")
    assert "z3" in out and "cvc5" in out


def test_solve_json_and_exit_codes(server: RunningServer) -> None:
    cli = proofrace(
        "solve", "-", "--addr", server.address, "--json",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = cli.communicate("(assert (oops))\n(check-sat)\n", timeout=60)
    assert cli.returncode == 2
    assert '"verdict": "error"' in out and '"kind": "invalidInput"' in out


def test_ctrl_c_cancels_through_the_token_and_shows_the_preemptions(
    server: RunningServer,
) -> None:
    cli = proofrace(
        "solve", str(SAMPLES / "pigeonhole-12.cnf"), "--addr", server.address,
        "--goal-id", "ctrl-c", "--prover", "cadical", "--prover", "minisat",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    solve_id = server.wait_for_event(
        lambda e: e["event"] == "solve.started" and e["goal_id"] == "ctrl-c"
    )["solve_id"]
    server.wait_for_events(
        lambda e: e["event"] == "attempt.started" and e["solve_id"] == solve_id, 2
    )
    cli.send_signal(signal.SIGINT)
    out, _ = cli.communicate(timeout=60)
    assert cli.returncode == 130
    assert "verdict: cancelled: interrupted from the terminal (Ctrl-C)" in out
    assert out.count("after the trigger") == 2
    finished = server.solve_finished(solve_id)
    assert finished["cause"] == "client"


def test_live_progress_on_a_terminal(server: RunningServer) -> None:
    controller, terminal = pty.openpty()
    cli = proofrace(
        "solve", str(SAMPLES / "pigeonhole-6.cnf"), "--addr", server.address,
        stdout=subprocess.PIPE, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    out, _ = cli.communicate(timeout=60)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert cli.returncode == 0
    assert b"solve " in shown and b"cadical" in shown
    assert "verdict: proved" in out


def test_provers_lists_the_registry(server: RunningServer) -> None:
    cli = proofrace("provers", "--addr", server.address, stdout=subprocess.PIPE)
    out, _ = cli.communicate(timeout=60)
    assert cli.returncode == 0
    lines = out.splitlines()
    assert lines[0].split() == ["prover", "version", "formats", "available"]
    assert any(line.split()[:1] == ["eprover"] and line.endswith("yes") for line in lines)


def test_an_unreachable_server_is_a_clear_error() -> None:
    cli = proofrace(
        "solve", str(SAMPLES / "distinct.smt2"), "--addr", "127.0.0.1:1",
        stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 2
    assert "cannot reach 127.0.0.1:1" in err
    assert "Traceback" not in err
