"""Peers and requests that misbehave: the server keeps serving everyone else and leaks nothing."""

from __future__ import annotations

import os
import random
import socket
import struct
from pathlib import Path

from conftest import SERVER_ENV, server_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofrace.client import Client, Format, Strategy, Verdict

from harness import SAMPLES, RunningServer, running_server

EASY = (SAMPLES / "distinct.smt2").read_text()


def frame(words: bytes, segments: int = 1) -> bytes:
    """A Cap'n Proto stream frame: segment table, then the segment."""
    return struct.pack("<II", segments - 1, len(words) // 8) + words


def nested(depth: int) -> bytes:
    """A root that nests `depth` structs, each a pointer to the next (an `unimplemented`
    Message inside an `unimplemented` Message, and so on)."""
    one_pointer_struct = struct.pack("<Q", 1 << 48)
    return frame(one_pointer_struct * depth + struct.pack("<Q", 0))


def looping() -> bytes:
    """A root struct whose only pointer points back at itself."""
    back_to_self = ((-1 & 0x3FFFFFFF) << 2) | (1 << 48)
    return frame(struct.pack("<QQ", 1 << 48, back_to_self))


HOSTILE = {
    "random bytes": os.urandom(64 * 1024),
    "random small": os.urandom(7),
    "truncated frame": struct.pack("<II", 0, 1000) + b"\0" * 80,
    "huge segment count": struct.pack("<I", 0xFFFFFFF0) + os.urandom(1024),
    "huge segment size": struct.pack("<II", 0, 0xFFFFFFFF),
    "deeply nested": nested(20_000),
    "pointer loop": looping(),
    "zero-length segment": struct.pack("<II", 0, 0),
}


def send_and_read_to_end(host: str, port: int, payload: bytes, timeout: float = 10) -> bool:
    """True when the server closed the connection (after whatever it had to say)."""
    with socket.create_connection((host, port)) as peer:
        peer.settimeout(timeout)
        peer.sendall(payload)
        if payload in (HOSTILE["truncated frame"], HOSTILE["random small"]):
            # The rest of the frame never comes. (A peer that just waits holds its connection
            # until the idle or login timeout, when one is set.)
            peer.shutdown(socket.SHUT_WR)
        while True:
            try:
                if peer.recv(65536) == b"":
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True


def test_hostile_streams_close_their_connection_and_nothing_else(own_server: RunningServer, run):
    server = own_server

    async def solve_easy() -> Verdict:
        async with Client.connect(server.address) as client:
            return (await (await client.solve(EASY, provers=["z3"])).result()).verdict

    assert run(solve_easy()) is Verdict.PROVED  # warm up before counting descriptors
    server.wait_for_events(lambda e: e["event"] == "connection.closed", 1)
    fds = server.fd_count()

    closed = {
        name: send_and_read_to_end(server.host, server.port, data) for name, data in HOSTILE.items()
    }
    assert all(closed.values()), closed
    # Everyone else is still served.
    assert run(solve_easy()) is Verdict.PROVED
    server.wait_for_events(
        lambda e: e["event"] in ("connection.closed", "connection.failed"), 2 + len(HOSTILE)
    )
    assert server.fd_count() == fds
    assert server.metric("proofrace_internal_errors_total") == 0
    assert server.process.poll() is None


def test_random_bytes_from_many_peers_at_once(own_server: RunningServer, run) -> None:
    server = own_server
    rng = random.Random(7)
    payloads = [rng.randbytes(rng.randint(1, 4096)) for _ in range(50)]
    for payload in payloads:
        with socket.create_connection((server.host, server.port)) as peer:
            peer.sendall(payload)
    server.wait_for_events(
        lambda e: e["event"] in ("connection.closed", "connection.failed"), len(payloads)
    )

    async def still_serving() -> Verdict:
        async with Client.connect(server.address) as client:
            return (await (await client.solve(EASY)).result()).verdict

    assert run(still_serving()) is Verdict.PROVED


PROVER_NAMES = ["z3", "cvc5", "cadical", "minisat", "eprover", "spass", "vampire", "", "Z3"]
SAMPLE_TEXTS = [p.read_bytes() for p in sorted(SAMPLES.glob("*")) if p.suffix in (".smt2", ".p")]


def mutated(data: bytes, rng: random.Random, flips: int) -> bytes:
    buffer = bytearray(data)
    for _ in range(flips):
        if buffer:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
    return bytes(buffer)


requests = st.fixed_dictionaries(
    {
        "content": st.one_of(
            st.binary(max_size=512),
            st.builds(
                mutated,
                st.sampled_from(SAMPLE_TEXTS),
                st.randoms(use_true_random=False),
                st.integers(0, 20),
            ),
            st.sampled_from(SAMPLE_TEXTS),
        ),
        "provers": st.lists(st.sampled_from(PROVER_NAMES), max_size=4),
        "format": st.sampled_from(list(Format)),
        "strategy": st.sampled_from(list(Strategy)),
        "quorum": st.integers(0, 255),
        "time_limit": st.one_of(st.none(), st.floats(0.001, 2.0)),
        "goal_id": st.text(max_size=40),
    }
)


def test_any_solve_request_gets_a_well_formed_answer(tmp_path: Path, run) -> None:
    env = {**SERVER_ENV, "PROOFRACE_MAX_TIMEOUT_S": "2", "PROOFRACE_DEFAULT_TIMEOUT_S": "2"}
    with running_server(server_args(tmp_path), env) as server:

        @settings(
            max_examples=80,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(requests)
        def check(request: dict) -> None:
            async def scenario():
                async with Client.connect(server.address) as client:
                    return await (await client.solve(**request)).result()

            outcome = run(scenario())
            assert (outcome.error is not None) == (outcome.verdict is Verdict.ERROR)
            assert (outcome.cancel_reason is not None) == (outcome.verdict is Verdict.CANCELLED)
            if outcome.winner:
                assert outcome.verdict in (Verdict.PROVED, Verdict.REFUTED)
            asked = [p for p in request["provers"]]
            if asked and outcome.attempts:
                assert [a.prover for a in outcome.attempts] == asked
            assert outcome.goal_id == request["goal_id"]

        check()
        assert server.metric("proofrace_internal_errors_total") == 0
        assert server.prover_pids() == []
        assert server.process.poll() is None
