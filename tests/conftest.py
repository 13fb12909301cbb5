"""Fixtures: a real proofrace server on real sockets, and a client inside pycapnp's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import capnp
import pytest

from harness import READY, RunningServer, running_server, write_test_registry

T = TypeVar("T")

# Small enough that a test can exceed it cheaply.
MAX_REQUEST_BYTES = 1024 * 1024


def server_args(tmp: Path, *extra: str) -> list[str]:
    return [
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--provers-file",
        str(write_test_registry(tmp / "test-provers.toml")),
        *extra,
    ]


SERVER_ENV = {
    "PROOFRACE_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    "PROOFRACE_GRACE_S": "0.3",
    # The stubborn provers announce readiness on named pipes there: the sandbox's one opening.
    "PROOFRACE_SANDBOX_WRITABLE": str(READY),
}
# The worker credential dispatchers and workers share in tests (a worker's role is its own).
WORKER_SECRET = "a worker's own credential, not a client's"
WORKER_ENV = {**SERVER_ENV, "PROOFRACE_WORKER_SECRET": WORKER_SECRET}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server shared by a test module."""
    tmp = tmp_path_factory.mktemp("server")
    with running_server(server_args(tmp), SERVER_ENV) as running:
        yield running


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server for one test, which may stop or kill it."""
    with running_server(server_args(tmp_path), SERVER_ENV) as running:
        yield running


@pytest.fixture
def run() -> Callable[[Awaitable[T]], T]:
    """Run a coroutine inside pycapnp's event loop."""

    def runner(coroutine: Awaitable[Any]) -> Any:
        async def main() -> Any:
            return await coroutine

        return asyncio.run(capnp.run(main()))

    return runner
