"""Unexpected faults, injected into a proofrace server that a test starts with this folder on
its PYTHONPATH and PROOFRACE_TEST_FAULT naming one of FAULTS. Python imports this module at
start-up; proofrace itself never does, and it is not installed.

Each fault raises (or returns) something that names a source path, which must never reach a
peer.
"""

from __future__ import annotations

import os
from typing import Any

WHERE = "/srv/proofrace/injected/fault.py"
FAULTS = ("write-provers", "write-status", "unwritable-token")


def _broken(*_args: Any, **_kwargs: Any) -> None:
    raise RuntimeError(f"injected fault in {WHERE}")


def _install(fault: str) -> None:
    from proofrace.wire import capabilities, convert

    if fault == "write-provers":  # Dispatcher.provers fails while setting its results
        convert.write_provers = _broken
    elif fault == "write-status":  # CancelToken.status (and cancel) fail the same way
        convert.write_status = _broken
    elif fault == "unwritable-token":  # Dispatcher.solve returns a value that cannot be written
        capabilities.CancelTokenServer = lambda _solve, _connection: WHERE
    else:
        raise SystemExit(f"PROOFRACE_TEST_FAULT: unknown fault {fault!r}; known: {FAULTS}")


if os.environ.get("PROOFRACE_TEST_FAULT"):
    _install(os.environ["PROOFRACE_TEST_FAULT"])
