"""The cache key: everything that can change a race's answer, and nothing else.

In the key:
- the problem, normalised (`normalise.py`), and the format it is read as;
- each prover raced, with its version and a digest of its registry entry (command, rules, ...);
- every other field of the plan: the strategy, the quorum (under `quorum` only) and any option
  added later, which enters the key without a change here.

Not in the key: the caller's goal id and the deadline. A deadline changes whether an answer
is found, not which answer; only decisive answers are stored.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from proofrace.cache.normalise import normalise
from proofrace.core.model import Problem, Strategy


class PlanLike(Protocol):
    """What the key reads of a race's plan (`race/plan.py`): a dataclass with these fields, and
    any others, which all enter the key."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def problem(self) -> Problem: ...

    @property
    def provers(self) -> tuple[str, ...]: ...

    @property
    def strategy(self) -> Strategy: ...

    @property
    def timeout_s(self) -> float: ...


# Plan fields that never change the answer.
_NOT_IN_KEY = frozenset({"timeout_s"})


@dataclass(frozen=True)
class CacheKey:
    digest: str  # hex SHA-256 of the canonical description
    provers: tuple[tuple[str, str], ...]  # (name, version) of each prover in the key

    def __str__(self) -> str:
        return self.digest


# A prover's identity: its version, and a digest of its registry entry.
Identity = Callable[[str], tuple[str, str]]


def cache_key(plan: PlanLike, identity: Identity) -> CacheKey:
    provers = sorted(plan.provers)
    identities = {name: identity(name) for name in provers}
    described: dict[str, Any] = {
        "problem": hashlib.sha256(normalise(plan.problem.content, plan.problem.format)).hexdigest(),
        "format": plan.problem.format.value,
        "provers": [[name, *identities[name]] for name in provers],
    }
    for f in dataclasses.fields(plan):
        if f.name not in _NOT_IN_KEY and f.name not in ("problem", "provers"):
            described[f.name] = canonical(getattr(plan, f.name))
    if plan.strategy is not Strategy.QUORUM:
        described.pop("quorum", None)
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return CacheKey(
        hashlib.sha256(text.encode()).hexdigest(),
        tuple((name, identities[name][0]) for name in provers),
    )


def entry_digest(entry: object) -> str:
    """A digest of a registry entry (any dataclass), stable across processes and machines."""
    text = json.dumps(canonical(entry), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def canonical(value: object) -> Any:
    """`value` as JSON data that is the same in every process: sets sorted, enums by value."""
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, re.Pattern):
        return [canonical(value.pattern), value.flags]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical(v) for v in value), key=json.dumps)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
