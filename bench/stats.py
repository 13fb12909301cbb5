"""Small statistics: nearest-rank percentiles, geometric means."""

from __future__ import annotations

import math
from collections.abc import Sequence

QUANTILES = (0.5, 0.9, 0.99)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: with fewer than 100 samples, p99 is the largest one."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    found = {f"p{round(q * 100)}": percentile(values, q) for q in QUANTILES}
    found["max"] = max(values)
    found["n"] = len(values)
    return found


def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan
