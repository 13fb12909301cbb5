"""Connecting to a proofrace server and starting solves.

Runs inside pycapnp's event loop: `asyncio.run(capnp.run(main()))`, or use `proofrace.client.sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

import capnp

from proofrace.client import login
from proofrace.client.address import Address
from proofrace.client.job import Job
from proofrace.client.transport import Link
from proofrace.core.model import CachePolicy, Format, ProverInfo, SolveRequest, Strategy
from proofrace.wire import convert


class ConnectError(Exception):
    """The server could not be reached, or would not let us in."""


class LoginRequired(ConnectError):
    pass


class LoginRefused(ConnectError):
    pass


class Client:
    """A connection to a proofrace server. Close it (`close()`, or leave `async with`): the
    server then sees it go at once, and cancels its solves still running as `disconnected`.
    A client collected while open (with its jobs) is closed too, with a `ResourceWarning`."""

    def __init__(self, link: Link, dispatcher: Any, idle_timeout_s: float) -> None:
        self._link = link
        self._dispatcher = dispatcher
        self._keepalive: asyncio.Task[None] | None = None
        if idle_timeout_s > 0:
            # The task holds the dispatcher, not the client: a dropped client can be collected.
            self._keepalive = asyncio.ensure_future(_ping_every(dispatcher, idle_timeout_s / 3))

    @staticmethod
    def connect(
        address: str, *, credential: str | None = None, tls: ssl.SSLContext | None = None
    ) -> _Connecting:
        """`client = await Client.connect(a)`, or `async with Client.connect(a) as client:`.

        `credential`: for a server that requires a login. `tls`: a client context (with the
        server's CA, and a client certificate for mutual TLS) for a server that speaks TLS.
        """
        return _Connecting(Address.parse(address), credential, tls)

    @property
    def closed(self) -> bool:
        return self._link.closed

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
        confirm: bool = False,
        cache: CachePolicy = CachePolicy.USE,
        wait_for_capacity: float = 0.0,
    ) -> Job:
        """Start a solve; `time_limit` is in seconds (None: the server's default); `cache`
        says whether the server's verdict cache may answer, or must be bypassed or refreshed.
        `wait_for_capacity`: while no prover for it is available yet (workers still starting),
        the server waits up to this many seconds for one instead of answering at once.

        Returns at once, without a round trip: the job holds the pipelined token, so a cancel
        can leave before the server has even answered `solve`.
        """
        self._link.check()
        request = SolveRequest(
            content=content.encode() if isinstance(content, str) else content,
            goal_id=goal_id,
            format=format,
            provers=tuple(provers),
            strategy=strategy,
            quorum=quorum,
            timeout_ms=round(time_limit * 1000) if time_limit else 0,
            confirm=confirm,
            cache=cache,
            wait_for_capacity_ms=round(wait_for_capacity * 1000),
        )
        call = self._dispatcher.solve_request()
        convert.write_request(call.init("request"), request)
        promise = call.send()
        return Job(promise, promise.token, self._link)

    async def provers(self) -> list[ProverInfo]:
        self._link.check()
        with self._link.translating():
            response = await self._dispatcher.provers()
        return convert.read_provers(response.provers)

    async def close(self) -> None:
        """Shut the connection down; idempotent. Later calls raise `ClientClosed`."""
        if self._link.closed:
            return
        self._dispatcher = None
        self._link.close()
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        # One turn of the loop: the transport closes the socket's descriptor.
        await asyncio.sleep(0)

    async def __aenter__(self) -> Client:
        self._link.check()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _ping_every(dispatcher: Any, interval_s: float) -> None:
    """Signs of life for a server with an idle timeout, while we wait on results."""
    with contextlib.suppress(capnp.KjException):
        while True:
            await asyncio.sleep(interval_s)
            await dispatcher.ping()


class _Connecting:
    def __init__(
        self, address: Address, credential: str | None, tls: ssl.SSLContext | None
    ) -> None:
        self._address = address
        self._credential = credential
        self._tls = tls
        self._client: Client | None = None

    async def _open(self) -> Client:
        link = await Link.open(self._address, self._tls)
        try:
            dispatcher = await self._dispatcher(link.rpc.bootstrap())
            try:
                idle_ms = (await dispatcher.ping()).idleTimeoutMs
            except capnp.KjException as error:
                # A bare Gate implements nothing but login.
                if self._credential is None and error.type == "UNIMPLEMENTED":
                    raise LoginRequired("the server requires a credential") from None
                raise
        except BaseException:
            link.close()
            raise
        return Client(link, dispatcher, idle_ms / 1000)

    async def _dispatcher(self, bootstrap: Any) -> Any:
        try:
            return await login.dispatcher_of(bootstrap, self._credential)
        except login.LoginRefused as refused:
            raise LoginRefused(str(refused)) from None

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
