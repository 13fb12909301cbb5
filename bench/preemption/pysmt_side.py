"""pySMT's `Portfolio` on the same first-success race: one process per solver (z3 and cvc5
through their Python bindings), the first answer wins, and pySMT sends SIGTERM to the others.

pySMT does not reap the losers itself (they stay zombies until the next multiprocessing call),
so the benchmark joins them right after `solve()` returns; the latency is the parent learning
the first answer until every loser is reaped. pySMT has no cancel call and no handle that can be
dropped while `solve()` runs, so only first success is measured.

Run in its own process (`python -m bench.preemption.pysmt_side`): pySMT forks, which is unsafe
in the harness's own multi-threaded process, and a solve without an answer would never return.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing.process
import multiprocessing.queues
import sys
import time
from pathlib import Path
from typing import Any

import pysmt.solvers.portfolio as portfolio_module
from pysmt.shortcuts import Portfolio
from pysmt.smtlib.parser import SmtLibParser

# Filled in by the instrumented classes below, for one solve at a time.
_started: list[Any] = []
_queues: list[Any] = []
_answered_ns: list[int] = []


class _Process(multiprocessing.Process):
    def start(self) -> None:
        super().start()
        _started.append(self)


class _Queue(multiprocessing.queues.Queue):  # type: ignore[type-arg]
    """Notes when the parent hears an answer, before pySMT acts on it."""

    def __init__(self) -> None:
        super().__init__(ctx=multiprocessing.get_context())
        _queues.append(self)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = super().get(block, timeout)
        if not isinstance(item[1], BaseException) and not _answered_ns:
            _answered_ns.append(time.monotonic_ns())
        return item


def _instrument() -> None:
    portfolio_module.Process = _Process
    portfolio_module.Queue = _Queue


def first_success(formula: Any, solvers: list[Any], logic: str) -> dict[str, Any]:
    _started.clear()
    _queues.clear()
    _answered_ns.clear()
    portfolio = Portfolio(solvers, logic=logic)
    try:
        portfolio.add_assertion(formula)
        answer = portfolio.solve()
        winner = portfolio._ext_solver
        losers = [p for p in _started if p is not winner]
        for process in losers:
            process.join()
        reaped_ns = time.monotonic_ns()
        # Answers left in the queue: losers that had finished before they were stopped.
        finished = 0
        while not _queues[0].empty():
            _queues[0].get_nowait()
            finished += 1
    finally:
        portfolio.exit()
    return {
        "answer": "refuted" if answer else "proved",
        "winner": winner.name if winner is not None else "",
        "losers": len(losers),
        "losers_finished": finished,
        "latency_ms": (reaped_ns - _answered_ns[0]) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="pySMT Portfolio first-success latency")
    parser.add_argument("problem", type=Path)
    parser.add_argument("--winner", required=True, help="solver expected to answer first")
    parser.add_argument("--loser", required=True, help="solver run, with seeds, as the losers")
    parser.add_argument("--losers", type=int, nargs="+", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--logic", default="QF_UF")
    args = parser.parse_args()
    _instrument()
    formula = SmtLibParser().get_script_fname(str(args.problem)).get_last_formula()
    results: dict[str, list[dict[str, Any]]] = {}
    for count in args.losers:
        solvers = [args.winner] + [(args.loser, {"random_seed": i + 1}) for i in range(count)]
        results[str(count)] = [
            first_success(formula, solvers, args.logic) for _ in range(args.runs)
        ]
        print(json.dumps({"progress": count}), file=sys.stderr, flush=True)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
