"""A solve's CancelToken in process, served over a socket pair: a cancel takes effect as the
call is dispatched, before the method's own task runs, and still answers with the status."""

from __future__ import annotations

import asyncio
import socket

import capnp

from proofrace import schema
from proofrace.core.model import CancelCause, CancelReason, SolveState, SolveStatus
from proofrace.wire.capabilities import CancelTokenServer
from proofrace.wire.connection import Connection


class CountedSolve:
    """A running solve that notes each cancel, and whether a task was running it. (Nothing
    here asks for its outcome.)"""

    solve_id = "s1"
    done = False

    def __init__(self) -> None:
        self.cancels: list[tuple[CancelReason, bool]] = []

    def cancel(self, reason: CancelReason) -> bool:
        self.cancels.append((reason, asyncio.current_task() is not None))
        return len(self.cancels) == 1

    def status(self) -> SolveStatus:
        reason = self.cancels[0][0] if self.cancels else None
        return SolveStatus(self.solve_id, SolveState.RUNNING, reason, "", 0, ())


async def test_a_cancel_takes_effect_as_it_is_dispatched_and_answers_with_the_status() -> None:
    solve = CountedSolve()
    async with capnp.kj_loop():
        server_sock, client_sock = socket.socketpair()
        server_stream = await capnp.AsyncIoStream.create_unix_connection(sock=server_sock)
        client_stream = await capnp.AsyncIoStream.create_unix_connection(sock=client_sock)
        token = CancelTokenServer(solve, Connection(server_sock, "test"))  # type: ignore[arg-type]
        server = capnp.TwoPartyServer(server_stream, bootstrap=token)
        client = capnp.TwoPartyClient(client_stream)
        try:
            remote = client.bootstrap().cast_as(schema.load().CancelToken)
            answer = await remote.cancel("enough")
        finally:
            del remote
            client.close()
            server.close()
            server_stream.close()
            client_stream.close()
    # The first call came from the dispatch itself (no task yet); the method's own, in its
    # task, found the cancel already called.
    assert [in_task for _reason, in_task in solve.cancels] == [False, True]
    assert solve.cancels[0][0] == CancelReason(CancelCause.CLIENT, "enough")
    assert answer.status.cancelReason.message == "enough"
