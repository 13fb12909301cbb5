"""Every way a race can end early reaches the prover processes, each with its own reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from proofrace.client import (
    AttemptOutcome,
    CancelCause,
    Client,
    SolveState,
    Verdict,
)

from harness import REPO, SAMPLES, RunningServer, readiness, wait_gone

HARD_SMT = (SAMPLES / "pigeonhole-12.smt2").read_text()
HARD_CNF_FILE = "pigeonhole-12.cnf"
HARD_CNF = (SAMPLES / HARD_CNF_FILE).read_text()
EASY_SMT = (SAMPLES / "distinct.smt2").read_text()


def started_pids(server: RunningServer, solve_id: str, count: int) -> list[int]:
    events = server.wait_for_events(
        lambda e: e["event"] == "attempt.started" and e["solve_id"] == solve_id, count
    )
    return [e["pid"] for e in events]


def test_pipelined_cancel_before_solve_answers_stops_the_race(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(HARD_SMT, provers=["z3", "cvc5"])
            # No await between solve() and cancel(): the cancel rides on the pipelined token.
            status = await job.cancel("changed my mind")
            return status, await job.result()

    status, outcome = run(scenario())
    assert status.cancel_reason is not None
    assert status.cancel_reason.cause is CancelCause.CLIENT
    assert outcome.verdict is Verdict.CANCELLED
    assert outcome.cancel_reason is not None
    assert outcome.cancel_reason.message == "changed my mind"
    for attempt in outcome.attempts:
        assert attempt.outcome is AttemptOutcome.CANCELLED
        assert attempt.stop is not None and attempt.stop.reason.cause is CancelCause.CLIENT
    assert server.prover_pids() == []


def test_cancel_of_a_running_race_reaps_every_process(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(HARD_CNF, provers=["cadical", "minisat"])
            solve_id = (await job.status()).solve_id
            pids = started_pids(server, solve_id, 2)
            assert all(os.path.exists(f"/proc/{p}") for p in pids)
            await job.cancel("enough")
            return pids, await job.result()

    pids, outcome = run(scenario())
    assert outcome.verdict is Verdict.CANCELLED
    assert all(a.stop is not None and a.stop.latency_ns > 0 for a in outcome.attempts)
    # Reaped means gone: no zombie, no process.
    assert all(not os.path.exists(f"/proc/{p}") for p in pids)
    assert server.metric("proofrace_solve_cancellations_total", cause="client") >= 1


def test_first_wins_preempts_the_slow_prover(server: RunningServer, run) -> None:
    before = server.metric(
        "proofrace_preemption_latency_seconds_count", reason="preempted", prover="think"
    )

    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(EASY_SMT, provers=["z3", "think"])
            return await job.result()

    outcome = run(scenario())
    assert outcome.verdict is Verdict.PROVED
    assert outcome.winner == "z3"
    z3, think = outcome.attempts
    assert z3.outcome is AttemptOutcome.PROVED and z3.status == "unsat"
    assert think.outcome is AttemptOutcome.CANCELLED
    assert think.stop is not None
    assert think.stop.reason.cause is CancelCause.PREEMPTED
    assert think.stop.reason.message == "preempted by z3"
    assert server.prover_pids() == []
    after = server.metric(
        "proofrace_preemption_latency_seconds_count", reason="preempted", prover="think"
    )
    assert after == before + 1
    assert server.metric("proofrace_wins_total", prover="z3") >= 1


def test_real_provers_race_and_the_loser_never_reads_as_a_failure(
    server: RunningServer, run
) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve((SAMPLES / "pigeonhole-6.cnf").read_text())
            return await job.result()

    outcome = run(scenario())
    assert outcome.verdict is Verdict.PROVED
    assert outcome.winner in {a.prover for a in outcome.attempts}  # whichever default was first
    assert len(outcome.attempts) >= 2
    for attempt in outcome.attempts:
        if attempt.prover == outcome.winner:
            assert attempt.outcome is AttemptOutcome.PROVED
        else:  # either it also finished, or it was preempted: never an error
            assert attempt.outcome in (AttemptOutcome.PROVED, AttemptOutcome.CANCELLED)
    assert server.prover_pids() == []


def test_dropping_the_token_cancels_with_token_dropped(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(HARD_CNF, provers=["cadical", "minisat"])
            solve_id = (await job.status()).solve_id
            pids = started_pids(server, solve_id, 2)
            job.release()
            del job
            # One more round trip on the same connection: the Release went out before it.
            await client.provers()
            return solve_id, pids

    solve_id, pids = run(scenario())
    finished = server.solve_finished(solve_id)
    assert finished["verdict"] == "cancelled"
    assert finished["cause"] == "tokenDropped"
    assert wait_gone(pids) == []
    assert server.metric("proofrace_solve_cancellations_total", cause="tokenDropped") >= 1


def test_a_waiting_result_keeps_the_race_alive_until_it_is_abandoned(
    server: RunningServer, run
) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(EASY_SMT, provers=["z3"])
            outcome = await job.result()
            job.release()
            return outcome

    outcome = run(scenario())
    # The race finished before the token went: dropping it then cancels nothing.
    assert outcome.verdict is Verdict.PROVED
    assert server.solve_finished(outcome.solve_id)["cause"] is None


CLIENT_THAT_DIES = textwrap.dedent(
    """
    import asyncio, os, sys
    import capnp
    from proofrace.client import Client

    async def main():
        async with Client.connect(sys.argv[1]) as client:
            job = await client.solve(open(sys.argv[2]).read(), provers=["cadical", "minisat"])
            print((await job.status()).solve_id, flush=True)
            sys.stdin.readline()  # the test kills us while we wait here
    asyncio.run(capnp.run(main()))
    """
)


def test_kill_9_of_the_client_cancels_with_disconnected(server: RunningServer) -> None:
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLIENT_THAT_DIES,
            server.address,
            str(SAMPLES / "pigeonhole-12.cnf"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert client.stdout is not None
    solve_id = client.stdout.readline().strip()
    pids = started_pids(server, solve_id, 2)
    client.send_signal(signal.SIGKILL)
    client.wait()
    finished = server.solve_finished(solve_id)
    assert finished["verdict"] == "cancelled"
    assert finished["cause"] == "disconnected"
    assert wait_gone(pids) == []


def test_the_deadline_gives_timeout(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(HARD_CNF, provers=["cadical", "minisat"], time_limit=0.3)
            return await job.result()

    outcome = run(scenario())
    assert outcome.verdict is Verdict.TIMEOUT
    for attempt in outcome.attempts:
        assert attempt.outcome is AttemptOutcome.TIMEOUT
        assert attempt.stop is not None and attempt.stop.reason.cause is CancelCause.TIMEOUT
    assert server.prover_pids() == []
    assert server.metric("proofrace_preemption_latency_seconds_count", reason="timeout") >= 2


def test_cancel_is_idempotent_and_the_first_reason_stays(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(HARD_SMT, provers=["z3"])
            first = await job.cancel("first")
            second = await job.cancel("second")
            outcome = await job.result()
            third = await job.cancel("after the end")
            return first, second, outcome, third

    first, second, outcome, third = run(scenario())
    assert first.cancel_reason is not None and first.cancel_reason.message == "first"
    assert second.cancel_reason is not None and second.cancel_reason.message == "first"
    assert outcome.cancel_reason is not None and outcome.cancel_reason.message == "first"
    assert third.state is SolveState.FINISHED


def test_sigterm_stops_the_server_after_reaping_every_prover(
    own_server: RunningServer, run
) -> None:
    server = own_server

    async def scenario():
        async with Client.connect(server.address) as client:
            with readiness("deaf") as ready:
                job = await client.solve(HARD_SMT, provers=["z3", "cvc5", "deaf"])
                solve_id = (await job.status()).solve_id
                started_pids(server, solve_id, 3)
                ready()  # SIGTERM is ignored from then on
            server.process.send_signal(signal.SIGTERM)
            return await job.result()

    outcome = run(scenario())
    assert outcome.verdict is Verdict.CANCELLED
    assert outcome.cancel_reason is not None
    assert outcome.cancel_reason.cause is CancelCause.SHUTDOWN
    assert server.stop() == 0
    assert server.prover_pids() == []
    deaf = next(a for a in outcome.attempts if a.prover == "deaf")
    assert deaf.stop is not None and deaf.stop.escalated


def test_no_prover_outlives_a_server_killed_with_sigkill(own_server: RunningServer, run) -> None:
    server = own_server
    temp_root = server.temp_root()

    async def scenario():
        async with Client.connect(server.address) as client:
            job = await client.solve(HARD_SMT, provers=["z3", "cvc5", "forker"])
            solve_id = (await job.status()).solve_id
            started_pids(server, solve_id, 3)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            return job

    run(scenario())
    # The orphan guard kills them once it sees the server's pipe close.
    assert wait_gone(server.prover_pids()) == []
    guard_done = wait_gone([p for p in _guard_pids(server.pid)])
    assert guard_done == []
    assert not temp_root.exists()


def _guard_pids(server_pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"proofrace.backends.watchdog" in cmdline and any(
                arg.startswith(f"{server_pid}-".encode()) for arg in cmdline
            ):
                found.append(int(entry.name))
    return found
