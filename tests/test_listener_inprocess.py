"""The listener in process: a failed accept is logged with its traceback and counted, and the
listener goes on accepting."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import capnp
import pytest
from structlog.testing import capture_logs

from proofrace.wire import listener as listener_module
from proofrace.wire.listener import RpcListener


async def test_a_failed_accept_is_logged_with_its_traceback_counted_and_survived(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listener_module, "_ACCEPT_RETRY_S", 0.0)
    monkeypatch.setattr(listener_module, "_FLUSH_S", 0.0)
    loop = asyncio.get_running_loop()
    real_accept = loop.sock_accept
    attempts = 0

    async def accept_failing_once(sock: socket.socket) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept(sock)

    monkeypatch.setattr(loop, "sock_accept", accept_failing_once)
    failures: list[None] = []
    opened: asyncio.Queue[int] = asyncio.Queue()
    async with capnp.kj_loop():
        rpc = RpcListener(
            lambda _connection: None,
            traversal_limit_words=1 << 16,
            on_connections=opened.put_nowait,
            on_accept_failed=lambda: failures.append(None),
        )
        with capture_logs() as logs:
            endpoint = await rpc.listen_tcp("127.0.0.1", 0)
            host, port = endpoint.address.rsplit(":", 1)
            _reader, writer = await asyncio.open_connection(host, int(port))
            assert await opened.get() == +1  # accepted after the failure
            writer.close()
            await rpc.stop_accepting()
            await rpc.close_connections(drain_timeout_s=0)
    assert len(failures) == 1
    (failed,) = [e for e in logs if e["event"] == "connection.accept_failed"]
    assert isinstance(failed["exc_info"], OSError) and failed["exc_info"].errno == errno.EMFILE
