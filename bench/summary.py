"""From per-instance results to the figures the report quotes: per format and overall."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.portfolio import PROVERS, InstanceResult, Timed
from bench.stats import geometric_mean


@dataclass
class Tally:
    solved: int = 0
    seconds: float = 0.0
    wrong: int = 0  # decisive answers that contradict the expected verdict

    def add(self, timed: Timed, expected: str | None) -> None:
        self.solved += timed.solved
        self.seconds += timed.seconds
        self.wrong += bool(timed.solved and expected and timed.answer != expected)


@dataclass
class Group:
    name: str
    instances: int = 0
    sequential: Tally = field(default_factory=Tally)
    portfolio: Tally = field(default_factory=Tally)
    vbs: Tally = field(default_factory=Tally)
    single: dict[str, Tally] = field(default_factory=dict)
    speedups: list[float] = field(default_factory=list)  # sequential / portfolio, per instance

    @property
    def best_single(self) -> str:
        return min(self.single, key=lambda p: (-self.single[p].solved, self.single[p].seconds))

    @property
    def speedup(self) -> float:
        """Total time of sequential over total time of the race."""
        return _ratio(self.sequential.seconds, self.portfolio.seconds)

    @property
    def vbs_ratio(self) -> float:
        """Total time of the race over the oracle's: 1.0 would be perfect."""
        return _ratio(self.portfolio.seconds, self.vbs.seconds)

    @property
    def geomean_speedup(self) -> float:
        return geometric_mean(self.speedups)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def virtual_best(result: InstanceResult, timeout: float) -> Timed:
    """The oracle that runs only the fastest decisive prover; if none is, it waits out the
    timeout like anyone else."""
    solved = [t for t in result.single.values() if t.solved]
    return min(solved, key=lambda t: t.seconds) if solved else Timed("timeout", timeout)


def group(name: str, results: Iterable[InstanceResult], timeout: float) -> Group:
    found = Group(name)
    for result in results:
        expected = result.instance.expected
        found.instances += 1
        found.sequential.add(result.sequential, expected)
        found.portfolio.add(result.portfolio, expected)
        found.vbs.add(virtual_best(result, timeout), expected)
        for prover, timed in result.single.items():
            found.single.setdefault(prover, Tally()).add(timed, expected)
        if result.sequential.solved or result.portfolio.solved:
            found.speedups.append(result.sequential.seconds / result.portfolio.seconds)
    return found


def by_format(results: list[InstanceResult], timeout: float) -> dict[str, Group]:
    return {
        fmt: group(fmt, [r for r in results if r.instance.format == fmt], timeout)
        for fmt in PROVERS
        if any(r.instance.format == fmt for r in results)
    }


def overall(groups: dict[str, Group], results: list[InstanceResult], timeout: float) -> Group:
    """Every instance; the best single prover is each format's best, taken together."""
    total = group("all", results, timeout)
    best = Tally()
    for g in groups.values():
        chosen = g.single[g.best_single]
        best.solved += chosen.solved
        best.seconds += chosen.seconds
        best.wrong += chosen.wrong
    total.single = {"+".join(g.best_single for g in groups.values()): best}
    return total


# Below this the fastest prover is done before a race can even start its provers.
TRIVIAL_S = 0.05


def nontrivial(results: list[InstanceResult], timeout: float) -> list[InstanceResult]:
    return [r for r in results if virtual_best(r, timeout).seconds >= TRIVIAL_S]
