"""The Python client library: scopes that cancel, blocking helpers, Unix sockets."""

from __future__ import annotations

import stat
from pathlib import Path

from conftest import SERVER_ENV, server_args

from proofrace.client import Client, SolveState, Verdict, sync

from harness import SAMPLES, RunningServer, readiness, running_server

EASY = (SAMPLES / "distinct.smt2").read_text()
HARD = (SAMPLES / "pigeonhole-12.cnf").read_text()


def test_leaving_a_job_scope_early_cancels_the_solve(server: RunningServer, run) -> None:
    async def scenario() -> str:
        async with Client.connect(server.address) as client:
            with readiness("think") as ready:
                job = await client.solve(HARD, provers=["cadical", "think"], goal_id="scoped")
                async with job:
                    solve_id = (await job.status()).solve_id
                    ready()
            return solve_id

    solve_id = run(scenario())
    finished = server.solve_finished(solve_id)
    assert finished["cause"] == "client"
    cancel = server.wait_for_event(
        lambda e: e["event"] == "solve.cancel_requested" and e["solve_id"] == solve_id
    )
    assert cancel["message"] == "the client left the job's scope"
    assert server.prover_pids() == []


def test_a_job_scope_left_after_the_result_cancels_nothing(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(EASY, provers=["z3"])
            async with job:
                outcome = await job.result()
            return outcome, job.done

    outcome, done = run(scenario())
    assert outcome.verdict is Verdict.PROVED and done
    assert server.solve_finished(outcome.solve_id)["cause"] is None


def test_status_reports_progress_while_running(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(HARD, provers=["cadical", "minisat"])
            async with job:
                solve_id = (await job.status()).solve_id
                server.wait_for_events(
                    lambda e: e["event"] == "attempt.started" and e["solve_id"] == solve_id, 2
                )
                return await job.status()

    status = run(scenario())
    assert status.state is SolveState.RUNNING
    assert [a.prover for a in status.attempts] == ["cadical", "minisat"]
    assert status.cancel_reason is None and status.winner == ""


def test_the_blocking_helpers(server: RunningServer) -> None:
    outcome = sync.solve(server.address, EASY, provers=["z3", "cvc5"])
    assert outcome.verdict is Verdict.PROVED
    assert {p.name for p in sync.provers(server.address)} >= {"z3", "eprover"}


def test_unix_socket_is_private_and_serves(tmp_path: Path) -> None:
    path = tmp_path / "run" / "proofrace.sock"
    with running_server(server_args(tmp_path, "--unix", str(path)), SERVER_ENV) as server:
        assert server.unix == f"unix:{path}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        outcome = sync.solve(f"unix:{path}", EASY, provers=["z3"])
        assert outcome.verdict is Verdict.PROVED
    assert not path.exists()  # removed on shutdown
