"""Provers that misbehave: helpers in their group, deaf to SIGTERM, or flooding their output."""

from __future__ import annotations

from proofrace.client import AttemptOutcome, Client, Verdict

from harness import SAMPLES, RunningServer, marked_processes, readiness, wait_gone

EASY_SMT = (SAMPLES / "distinct.smt2").read_text()


def test_a_provers_helper_processes_die_with_it(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            with readiness("forker") as ready:
                job = await client.solve(EASY_SMT, provers=["forker"])
                await job.status()  # the request has left
                ready()  # its three helpers exist by then
            family = marked_processes(f"PROOFRACE_OWNER={server.pid}-")
            await job.cancel("stop the family")
            return family, await job.result()

    family, outcome = run(scenario())
    assert len(family) == 4  # the prover and its three helpers
    assert outcome.attempts[0].outcome is AttemptOutcome.CANCELLED
    assert wait_gone(family) == []


def test_sigterm_is_escalated_to_sigkill_after_the_grace_period(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            with readiness("deaf") as ready:
                job = await client.solve(EASY_SMT, provers=["deaf", "think"])
                await job.status()
                ready()
            await job.cancel("stop")
            return await job.result()

    outcome = run(scenario())
    deaf, think = outcome.attempts
    assert deaf.stop is not None and deaf.stop.escalated and deaf.exit.signal == 9
    assert deaf.stop.latency_ns >= 0.3e9  # the server's grace period in these tests
    assert think.stop is not None and not think.stop.escalated and think.exit.signal == 15
    assert server.prover_pids() == []


def test_a_flood_of_output_is_counted_not_kept(server: RunningServer, run) -> None:
    rss_before = server.rss_bytes()

    async def scenario():
        async with Client.connect(server.address) as client:
            with readiness("flooder", timeout=60) as flooded:
                job = await client.solve(EASY_SMT, provers=["flooder"])
                await job.status()
                flooded()  # 64 MiB written, so nearly all of it read by the server
            await job.cancel("that is enough")
            return await job.result()

    outcome = run(scenario())
    (flooder,) = outcome.attempts
    assert outcome.verdict is Verdict.CANCELLED
    assert flooder.output_bytes > 64 * 1024 * 1024
    assert len(flooder.output_tail.encode()) <= 16 * 1024
    assert server.rss_bytes() - rss_before < 32 * 1024 * 1024
