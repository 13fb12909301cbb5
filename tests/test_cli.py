"""The `proofrace` command against a live server."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVER_ENV, WORKER_ENV, server_args

from harness import REPO, SAMPLES, RunningServer, running_server


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


def one_line_failure(*args: str, code: int) -> str:
    """Runs the CLI, which must fail with `code` and one line on stderr; returns the line."""
    cli = proofrace(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == code, err
    assert out == "" and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


EASY_FILE = str(SAMPLES / "distinct.smt2")


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    err = one_line_failure("solve", EASY_FILE, "--addr", "127.0.0.1:1", code=69)
    assert "connection refused by 127.0.0.1:1" in err
    err = one_line_failure("provers", "--addr", f"unix:{tmp_path / 'none.sock'}", code=69)
    assert "no server listens on" in err
    err = one_line_failure("provers", "--addr", "no-port-here", code=64)
    assert "neither host:port nor unix:/path" in err
    err = one_line_failure("solve", str(tmp_path / "missing.smt2"), code=66)
    assert "cannot read" in err


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    """A server behind TLS and a login, with material made by deploy/make-secrets.sh."""
    tmp = tmp_path_factory.mktemp("hardened")
    secrets = tmp / "secrets"
    subprocess.run([str(REPO / "deploy/make-secrets.sh"), str(secrets)], check=True,
                   capture_output=True)  # fmt: skip
    env = {
        **SERVER_ENV,
        "PROOFRACE_TLS_CERT": str(secrets / "tls.crt"),
        "PROOFRACE_TLS_KEY": str(secrets / "tls.key"),
        "PROOFRACE_AUTH_SECRET_FILE": str(secrets / "login"),
    }
    with running_server(server_args(tmp), env) as running:
        yield running, secrets


def test_tls_and_login_mismatches_are_one_line_each(
    hardened: tuple[RunningServer, Path], server: RunningServer, tmp_path: Path
) -> None:
    tls_server, secrets = hardened
    ca, login = str(secrets / "ca.crt"), str(secrets / "login")
    for command in (["solve", EASY_FILE], ["provers"]):
        # A plain client against the TLS server: the server hangs up at once.
        err = one_line_failure(*command, "--addr", tls_server.address, code=76)
        assert "it probably expects TLS; give --tls-ca" in err
    # A TLS client against a plain server.
    err = one_line_failure("provers", "--addr", server.address, "--tls-ca", ca, code=76)
    assert "the server probably speaks plain TCP; drop --tls-ca" in err
    # A CA that did not sign the server's certificate.
    other = tmp_path / "other"
    subprocess.run([str(REPO / "deploy/make-secrets.sh"), str(other)], check=True,
                   capture_output=True)  # fmt: skip
    err = one_line_failure(
        "provers", "--addr", tls_server.address, "--tls-ca", str(other / "ca.crt"), code=76
    )
    assert "certificate that was not accepted" in err
    # TLS right, login missing or wrong.
    err = one_line_failure("provers", "--addr", tls_server.address, "--tls-ca", ca, code=77)
    assert "requires a login: give --credential-file" in err
    err = one_line_failure(
        "provers", "--addr", tls_server.address, "--tls-ca", ca,
        "--credential-file", str(other / "login"), code=77,
    )  # fmt: skip
    assert "refused the credential" in err
    # Everything right: the certificate names 127.0.0.1 too.
    cli = proofrace(
        "solve", EASY_FILE, "--addr", tls_server.address, "--tls-ca", ca,
        "--credential-file", login, stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = cli.communicate(timeout=60)
    assert cli.returncode == 0 and out.startswith("verdict: proved")


def test_with_no_worker_yet_a_solve_says_so_or_waits_for_one(tmp_path: Path) -> None:
    with running_server(server_args(tmp_path, "--local-slots", "0"), WORKER_ENV) as dispatcher:
        cli = proofrace("solve", EASY_FILE, "--addr", dispatcher.address, stdout=subprocess.PIPE)
        out, _ = cli.communicate(timeout=60)
        assert cli.returncode == 2
        assert "proverUnavailable: no prover for smtlib2 is available yet" in out
        assert "no worker running one has registered" in out
        # A bounded wait that runs out says how long it waited.
        cli = proofrace(
            "solve", EASY_FILE, "--addr", dispatcher.address, "--wait-for-capacity", "0.2",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = cli.communicate(timeout=60)
        assert cli.returncode == 2 and "(waited 200 ms)" in out
        # A solve that waits starts its race once a worker registers.
        cli = proofrace(
            "solve", EASY_FILE, "--addr", dispatcher.address, "--wait-for-capacity", "120",
            "--goal-id", "patient", stdout=subprocess.PIPE,
        )  # fmt: skip
        dispatcher.wait_event(event="solve.waiting", goal_id="patient", wait_ms=120_000)
        registry = next(a for a in server_args(tmp_path) if a.endswith(".toml"))
        worker_args = ["--name", "late", "--slots", "2", "--metrics", "127.0.0.1:0",
                       "--provers-file", registry, "--dispatcher", dispatcher.address]  # fmt: skip
        with running_server(worker_args, WORKER_ENV, command="worker"):
            out, _ = cli.communicate(timeout=60)
        assert cli.returncode == 0, out
        assert out.startswith("verdict: proved (winner: ")
