"""`proofrace solve FILE`: a live per-prover display, Ctrl-C cancels through the token."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import enum
import json
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

import capnp

from proofrace.cli import connect
from proofrace.cli.errors import EXIT_NOINPUT, Failure, lost
from proofrace.client import Job
from proofrace.core.model import (
    AttemptResult,
    CachePolicy,
    Format,
    SolveOutcome,
    SolveStatus,
    Source,
    Strategy,
    Verdict,
)

_REFRESH_S = 0.1
EXIT_DECIDED, EXIT_UNDECIDED, EXIT_ERROR, EXIT_CANCELLED = 0, 1, 2, 130


def run_solve(args: argparse.Namespace) -> int:
    try:
        content = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        print(f"proofrace solve: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return EXIT_NOINPUT
    try:
        code: int = asyncio.run(capnp.run(_solve(args, content)))
    except Failure as failure:
        print(f"proofrace solve: {failure.message}", file=sys.stderr)
        return failure.code
    return code


async def _solve(args: argparse.Namespace, content: bytes) -> int:
    client = await connect.connect(args)
    try:
        job = await client.solve(
            content,
            provers=args.prover,
            format=Format(args.format),
            strategy=Strategy(args.strategy),
            quorum=args.quorum,
            time_limit=args.timeout,
            goal_id=args.goal_id,
            confirm=args.confirm,
            cache=CachePolicy(args.cache),
            wait_for_capacity=args.wait_for_capacity,
        )
        display = _Display(sys.stderr, live=sys.stderr.isatty() and not args.json)
        await _follow(job, display)
        outcome = await job.result()
        display.clear()
    except Exception as error:
        raise lost(error, args.addr) from None
    finally:
        await client.close()
    if args.json:
        print(json.dumps(_jsonable(outcome), indent=2))
    else:
        print(render_outcome(outcome))
    return exit_code(outcome)


async def _follow(job: Job, display: _Display) -> None:
    """Show progress until the result is in; Ctrl-C cancels the solve through its token."""
    loop = asyncio.get_running_loop()
    result = asyncio.ensure_future(job.result())
    cancelling: asyncio.Task[Any] | None = None

    def on_interrupt() -> None:
        nonlocal cancelling
        if cancelling is None:
            cancelling = loop.create_task(job.cancel("interrupted from the terminal (Ctrl-C)"))

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        while not result.done():
            if display.live:
                display.show(await job.status())
            await asyncio.wait({result}, timeout=_REFRESH_S)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    if cancelling is not None:
        await cancelling


class _Display:
    def __init__(self, out: TextIO, live: bool) -> None:
        self._out = out
        self.live = live
        self._lines = 0

    def show(self, status: SolveStatus) -> None:
        self.clear()
        lines = [f"solve {status.solve_id}  {status.state.value}  {_ms(status.elapsed_ns)}"]
        for a in status.attempts:
            state = a.outcome.value if a.outcome else a.state.value
            lines.append(
                f"  {a.prover:<10} {state:<14} {_ms(a.elapsed_ns):>10}  {a.output_bytes} B out"
            )
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()
        self._lines = len(lines)

    def clear(self) -> None:
        if self._lines:
            self._out.write(f"\x1b[{self._lines}F\x1b[J")
            self._lines = 0


def render_outcome(outcome: SolveOutcome) -> str:
    head = f"verdict: {outcome.verdict.value}"
    if outcome.winner:
        head += f" (winner: {outcome.winner}, {outcome.grounds.value})"
    if outcome.cancel_reason is not None:
        head += f": {outcome.cancel_reason}"
    if outcome.error is not None:
        head += f": {outcome.error.kind.value}: {outcome.error.message}"
    head += f"  [{_ms(outcome.elapsed_ns)}]"
    if outcome.conflict is not None:
        proved, refuted = ", ".join(outcome.conflict.proved), ", ".join(outcome.conflict.refuted)
        head += f"\nCONFLICT: proved by {proved}; refuted by {refuted}; nothing settles it"
    elif outcome.disagreement:
        head += "\nWARNING: provers gave contradictory decisive answers"
    if outcome.cached is not None:
        found = datetime.datetime.fromtimestamp(outcome.cached.found_us / 1e6, datetime.UTC)
        head += (
            f"\nfrom the cache: found by {outcome.cached.found_by}"
            f" in solve {outcome.cached.solve_id} at {found:%Y-%m-%d %H:%M:%S} UTC"
        )
    elif outcome.source is Source.JOINED:
        head += "\njoined an identical race already running"
    lines = [head, *(_render_attempt(a) for a in outcome.attempts)]
    return "\n".join(lines)


def _render_attempt(a: AttemptResult) -> str:
    line = f"  {a.prover:<10} {a.outcome.value:<20} {_ms(a.elapsed_ns):>10}"
    if a.status:
        line += f"  {a.status}"
    if a.stop is not None:
        line += f"  {a.stop.reason}; stopped {_ms(a.stop.latency_ns)} after the trigger"
        if a.stop.escalated:
            line += " (needed SIGKILL)"
    elif a.message:
        line += f"  {a.message}"
    return line


def exit_code(outcome: SolveOutcome) -> int:
    if outcome.verdict in (Verdict.PROVED, Verdict.REFUTED):
        return EXIT_DECIDED
    if outcome.verdict is Verdict.CANCELLED:
        return EXIT_CANCELLED
    if outcome.verdict is Verdict.ERROR:
        return EXIT_ERROR
    return EXIT_UNDECIDED


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms" if ns < 10_000_000_000 else f"{ns / 1e9:.1f} s"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
