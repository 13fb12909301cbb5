"""Turning a request into a plan the race can run, or a clear error value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from proofrace.core import features
from proofrace.core.formats import detect
from proofrace.core.model import (
    ErrorKind,
    Format,
    Problem,
    ProverInfo,
    SolveError,
    SolveRequest,
    Strategy,
)


@dataclass(frozen=True)
class RaceLimits:
    max_request_bytes: int = 16 * 1024 * 1024
    default_timeout_s: float = 300.0
    max_timeout_s: float = 3600.0
    max_attempts: int = 16
    max_solves: int = 256


@dataclass(frozen=True)
class Plan:
    problem: Problem
    provers: tuple[str, ...]
    strategy: Strategy
    quorum: int
    timeout_s: float
    confirm: bool = False
    engines: Mapping[str, str] = field(default_factory=dict)  # prover -> engine, for `confirm`


def plan(request: SolveRequest, catalog: list[ProverInfo], limits: RaceLimits) -> Plan | SolveError:
    size = len(request.content)
    if size > limits.max_request_bytes:
        return SolveError(
            ErrorKind.REQUEST_TOO_LARGE,
            f"the problem is {size} bytes; this server accepts at most {limits.max_request_bytes}",
        )
    if not request.content.strip():
        return SolveError(ErrorKind.INVALID_REQUEST, "the problem is empty")

    problem_format = request.format
    if problem_format is Format.AUTO:
        detected = detect(request.content)
        if detected is None:
            return SolveError(
                ErrorKind.UNSUPPORTED_FORMAT,
                "could not recognise the problem as SMT-LIB2, DIMACS or TPTP; set the format",
            )
        problem_format = detected

    reading = features.read(request.content, problem_format)
    if "include" in reading.needs:
        return SolveError(
            ErrorKind.INVALID_INPUT,
            "the problem includes other files, which the server cannot read: inline them",
        )
    provers = _choose_provers(
        request.provers, problem_format, reading.needs, catalog, every=request.confirm
    )
    if isinstance(provers, SolveError):
        return provers

    if len(provers) > limits.max_attempts:
        return SolveError(
            ErrorKind.INVALID_REQUEST,
            f"{len(provers)} attempts asked; at most {limits.max_attempts} per solve here",
        )

    if request.strategy is Strategy.QUORUM and not 1 <= request.quorum <= len(provers):
        return SolveError(
            ErrorKind.INVALID_REQUEST,
            f"quorum {request.quorum} cannot be reached by {len(provers)} prover(s)",
        )

    timeout_s = request.timeout_ms / 1000 if request.timeout_ms else limits.default_timeout_s
    return Plan(
        problem=Problem(reading.content, problem_format, request.goal_id),
        provers=provers,
        strategy=request.strategy,
        quorum=request.quorum,
        timeout_s=min(timeout_s, limits.max_timeout_s),
        confirm=request.confirm,
        engines={i.name: i.engine or i.name for i in catalog if i.name in provers},
    )


def _none_available(problem_format: Format, catalog: list[ProverInfo]) -> SolveError:
    known = [i.name for i in catalog if i.default and problem_format in i.formats]
    if not known:
        return SolveError(ErrorKind.NO_PROVER, f"no prover known here reads {problem_format.value}")
    # Known but not running anywhere: a dispatcher whose workers have not registered yet.
    return SolveError(
        ErrorKind.PROVER_UNAVAILABLE,
        f"no prover for {problem_format.value} is available yet ({', '.join(known)} are "
        "known, but none is installed here and no worker running one has registered; "
        "workers may still be starting): retry, or let the solve wait for capacity",
    )


def _choose_provers(
    names: tuple[str, ...],
    problem_format: Format,
    needs: frozenset[str],
    catalog: list[ProverInfo],
    *,
    every: bool = False,
) -> tuple[str, ...] | SolveError:
    """The provers to race: the ones named (or every default one; with `every`, every one)
    that read the problem. `confirm` races them all: each is a chance of a second engine.

    A named prover that cannot read what the problem needs is left out of the race; the
    request is refused only when that leaves none.
    """
    known = {info.name: info for info in catalog}
    if not names:
        readers = [
            i
            for i in catalog
            if i.available and (i.default or every) and problem_format in i.formats
        ]
        chosen = tuple(i.name for i in readers if features.handles(i.handles, needs))
        if not chosen:
            if not readers:
                return _none_available(problem_format, catalog)
            return SolveError(
                ErrorKind.NO_PROVER,
                f"no installed prover reads {problem_format.value} with {features.describe(needs)}",
            )
        return chosen
    if len(set(names)) != len(names):
        return SolveError(ErrorKind.INVALID_REQUEST, "a prover is named more than once")
    for name in names:
        info = known.get(name)
        if info is None:
            return SolveError(
                ErrorKind.UNKNOWN_PROVER,
                f"unknown prover {name!r}; this server knows {', '.join(sorted(known))}",
            )
        if not info.available:
            return SolveError(
                ErrorKind.PROVER_UNAVAILABLE, f"prover {name!r} is not available here now"
            )
        if problem_format not in info.formats:
            reads = ", ".join(f.value for f in info.formats)
            return SolveError(
                ErrorKind.UNSUPPORTED_FORMAT,
                f"prover {name!r} does not read {problem_format.value} (it reads {reads})",
            )
    able = tuple(n for n in names if features.handles(known[n].handles, needs))
    if not able:
        return SolveError(
            ErrorKind.UNSUPPORTED_FORMAT,
            f"none of {', '.join(names)} reads a problem with {features.describe(needs)}",
        )
    return able
