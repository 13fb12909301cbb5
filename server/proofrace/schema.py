"""The Cap'n Proto contract, loaded once for the server and the Python client."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import capnp

SCHEMA_FILE = "proofrace.capnp"


def schema_path() -> str:
    return str(resources.files("proofrace.schemas").joinpath(SCHEMA_FILE))


@functools.cache
def load() -> Any:
    """The compiled schema module (pycapnp aborts the process if the file is broken)."""
    return capnp.load(schema_path())
