"""No traceback ever reaches a peer. An unexpected fault in a live server (injected through
tests/fault_injection, which the server imports at start-up only when a test asks) reaches the
client as one fixed line with a reference; the server's log holds the traceback under that same
reference. Parameters a peer made unreadable are refused the same way, without a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import pkgutil
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import capnp
import pytest
from conftest import SERVER_ENV, server_args

import proofrace
from proofrace import schema
from proofrace.client import Client, Verdict
from proofrace.wire.calls import _Guarded, rpc_method

from harness import REPO, SAMPLES, RunningServer, running_server

EASY = (SAMPLES / "distinct.smt2").read_text()
FAULTS = REPO / "tests" / "fault_injection"
INJECTED_AT = "/srv/proofrace/injected/fault.py"  # as tests/fault_injection/sitecustomize.py
PEER_LINE = re.compile(
    r"remote exception: message = internal server error: ref ([0-9a-f]{8}); see the server log\n"
)


@contextlib.contextmanager
def server_with_fault(tmp: Path, fault: str) -> Iterator[RunningServer]:
    path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH")) if p)
    env = {**SERVER_ENV, "PROOFRACE_TEST_FAULT": fault, "PYTHONPATH": path}
    with running_server(server_args(tmp), env) as server:
        yield server


def assert_one_fixed_line(server: RunningServer, error: BaseException) -> str:
    """What the peer saw is the fixed line, naming the log entry that holds the traceback;
    returns that traceback."""
    assert isinstance(error, capnp.KjException)
    seen = str(error)
    for leak in ("Traceback", 'File "', ".py", "injected", "proofrace/", "capnp.lib"):
        assert leak not in seen
    match = PEER_LINE.fullmatch(error.description)
    assert match is not None, error.description
    logged = server.wait_event(event="rpc.internal_error", ref=match.group(1))
    assert logged["level"] == "error"
    assert logged["exception"].startswith("Traceback (most recent call last):")
    assert server.metric("proofrace_internal_errors_total") >= 1
    return str(logged["exception"])


def test_a_fault_while_setting_results(tmp_path: Path, run) -> None:
    with server_with_fault(tmp_path, "write-provers") as server:

        async def scenario() -> tuple[BaseException, Verdict]:
            async with Client.connect(server.address) as client:
                with pytest.raises(capnp.KjException) as failed:
                    await client.provers()
                # The connection and the server serve on.
                job = await client.solve(EASY, provers=["z3"])
                return failed.value, (await job.result()).verdict

        error, verdict = run(scenario())
        logged = assert_one_fixed_line(server, error)
        assert f"RuntimeError: injected fault in {INJECTED_AT}" in logged
        assert verdict is Verdict.PROVED


def test_a_fault_in_a_token_method(tmp_path: Path, run) -> None:
    with server_with_fault(tmp_path, "write-status") as server:

        async def scenario() -> BaseException:
            async with Client.connect(server.address) as client:
                job = await client.solve(EASY, provers=["z3"])
                with pytest.raises(capnp.KjException) as failed:
                    await job.status()
                return failed.value

        logged = assert_one_fixed_line(server, run(scenario()))
        assert f"RuntimeError: injected fault in {INJECTED_AT}" in logged
        assert server.events(event="rpc.internal_error")[0]["method"] == "status"


def test_a_returned_value_that_cannot_be_written(tmp_path: Path, run) -> None:
    """`solve` returns its token; a failure writing it happens after the method returned."""
    with server_with_fault(tmp_path, "unwritable-token") as server:

        async def scenario() -> BaseException:
            async with Client.connect(server.address) as client:
                job = await client.solve(EASY, provers=["z3"])
                with pytest.raises(capnp.KjException) as failed:
                    await job.status()  # pipelined on the failed answer: the same error
                return failed.value

        logged = assert_one_fixed_line(server, run(scenario()))
        assert "Value type mismatch" in logged  # a text where the token goes
        assert [e["method"] for e in server.events(event="rpc.internal_error")] == ["solve"]


def test_unreadable_parameters_are_refused_without_a_traceback(server: RunningServer, run) -> None:
    async def scenario() -> BaseException:
        stream = await capnp.AsyncIoStream.create_connection(server.host, server.port)
        rpc = capnp.TwoPartyClient(stream)
        dispatcher = rpc.bootstrap().cast_as(schema.load().Dispatcher)
        try:
            with pytest.raises(capnp.KjException) as failed:
                await dispatcher.login(b"\xff\xfe not UTF-8")  # a Text that cannot be decoded
            return failed.value
        finally:
            rpc.close()
            stream.close()

    error = run(scenario())
    assert isinstance(error, capnp.KjException)
    assert error.description == (
        "remote exception: message = invalid call: its parameters could not be read\n"
    )
    logged = server.wait_event(event="rpc.unreadable_call")
    assert logged["method"] == "login" and "utf-8" in logged["error"]


def capability_classes() -> list[type]:
    """Every pycapnp server class defined in the proofrace package."""
    found = []
    for module_info in pkgutil.walk_packages(proofrace.__path__, "proofrace."):
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and hasattr(cls, "schema")
                and any(base.__name__.endswith(".Server") for base in cls.__mro__[1:])
            ):
                found.append(cls)
    return found


def test_every_capability_method_is_served_inside_the_guard() -> None:
    classes = capability_classes()
    assert {c.__name__ for c in classes} >= {"DispatcherServer", "CancelTokenServer"}
    for cls in classes:
        for name in cls.schema.method_names_inherited:
            assert hasattr(cls, f"{name}_context"), (cls, name)  # implemented, or refused
            if hasattr(cls, name):
                assert isinstance(inspect.getattr_static(cls, name), _Guarded), (cls, name)


class HalfAToken(schema.load().CancelToken.Server):  # type: ignore[misc,name-defined]
    """Implements `status` only, as a class whose interface grew ahead of it would."""

    connection = None

    @rpc_method
    async def status(self, _context: Any, **kwargs: Any) -> None:
        _context.results.init("status").solveId = "s1"


async def test_a_method_the_class_lacks_is_refused_without_a_traceback() -> None:
    async with capnp.kj_loop():
        server_end, client_end = socket.socketpair()
        served = await capnp.AsyncIoStream.create_unix_connection(sock=server_end)
        dialled = await capnp.AsyncIoStream.create_unix_connection(sock=client_end)
        server = capnp.TwoPartyServer(served, bootstrap=HalfAToken())
        client = capnp.TwoPartyClient(dialled)
        token = client.bootstrap().cast_as(schema.load().CancelToken)
        try:
            assert (await token.status()).status.solveId == "s1"
            with pytest.raises(capnp.KjException) as failed:
                await token.result()
        finally:
            del token
            client.close()
            server.close()
            dialled.close()
            served.close()
    assert failed.value.description == "remote exception: message = not implemented: result\n"
