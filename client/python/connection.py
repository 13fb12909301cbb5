"""Connecting to a proofrace server and starting solves.

Runs inside pycapnp's event loop: `asyncio.run(capnp.run(main()))`, or use `proofrace.client.sync`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

import capnp

from proofrace import schema
from proofrace.client.address import Address
from proofrace.client.job import Job
from proofrace.core.model import Format, ProverInfo, SolveRequest, Strategy
from proofrace.wire import convert


class Client:
    def __init__(self, rpc: Any, dispatcher: Any) -> None:
        self._rpc = rpc
        self._dispatcher = dispatcher

    @staticmethod
    def connect(address: str) -> _Connecting:
        """`client = await Client.connect(a)`, or `async with Client.connect(a) as client:`."""
        return _Connecting(Address.parse(address))

    async def solve(
        self,
        content: bytes | str,
        *,
        provers: Sequence[str] = (),
        format: Format = Format.AUTO,
        strategy: Strategy = Strategy.FIRST_WINS,
        quorum: int = 2,
        time_limit: float | None = None,
        goal_id: str = "",
    ) -> Job:
        """Start a solve; `time_limit` is in seconds (None: the server's default).

        Returns at once, without a round trip: the job holds the pipelined token, so a cancel
        can leave before the server has even answered `solve`.
        """
        request = SolveRequest(
            content=content.encode() if isinstance(content, str) else content,
            goal_id=goal_id,
            format=format,
            provers=tuple(provers),
            strategy=strategy,
            quorum=quorum,
            timeout_ms=round(time_limit * 1000) if time_limit else 0,
        )
        call = self._dispatcher.solve_request()
        convert.write_request(call.init("request"), request)
        promise = call.send()
        return Job(promise, promise.token)

    async def provers(self) -> list[ProverInfo]:
        response = await self._dispatcher.provers()
        return convert.read_provers(response.provers)

    async def close(self) -> None:
        self._dispatcher = None
        self._rpc.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class _Connecting:
    def __init__(self, address: Address) -> None:
        self._address = address
        self._client: Client | None = None

    async def _open(self) -> Client:
        a = self._address
        if a.path:
            stream = await capnp.AsyncIoStream.create_unix_connection(a.path)
        else:
            stream = await capnp.AsyncIoStream.create_connection(a.host, a.port)
        rpc = capnp.TwoPartyClient(stream)
        dispatcher = rpc.bootstrap().cast_as(schema.load().Dispatcher)
        return Client(rpc, dispatcher)

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()
