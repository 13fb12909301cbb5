"""The report's section on the verdict cache, from `cache.json` (`python -m bench.cache`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TITLE = "## 4. The verdict cache: a corpus re-run, and the latency of a hit"
RESULTS = "cache.json"


def section(out: Path) -> list[str]:
    """The section's lines, or none when the cache benchmark has not run."""
    try:
        results: dict[str, Any] = json.loads((out / RESULTS).read_text())
    except FileNotFoundError:
        return []
    cold, warm = results["cold"], results["warm"]
    decided = cold["decided"]
    lines = [
        TITLE,
        "",
        f"`python -m bench.cache`: a server with the embedded cache (SQLite, fresh state "
        f"directory) solves all {cold['instances']} corpus instances one after another with the "
        f"portfolio's provers and a {results['timeout_s']:g} s deadline, cold, then again, warm. "
        "Provers started are counted from its `attempt.started` log events. Other work shared "
        "the machine during the run" + _load(results) + ": read the ratios first.",
        "",
        "| run | wall time | provers started | decided | answered from the cache |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in (("cold", cold), ("warm", warm)):
        lines.append(
            f"| {name} | {run['seconds']:.1f} s | {run['provers_started']} | "
            f"{run['decided']}/{run['instances']} | {run['sources'].get('cache', 0)} |"
        )
    lines += [
        "",
        f"- The {decided} decided instances took {cold['decided_seconds']:.2f} s cold and "
        f"{warm['decided_seconds']:.2f} s warm. The "
        f"{cold['instances'] - decided} undecided ones (timeouts, unknowns) are never cached: "
        "they race again, warm as cold, and are most of the warm run.",
        "- Cold, an instance whose normalised text equals an earlier one's is already a hit.",
        "",
        f"A cache hit, {results['hits']} solves of decided instances in turn, in ms. Client: "
        "`solve()` to `result()` answered, one round trip on loopback TCP. Server: the lookup, "
        "from its start to the entry in hand.",
        "",
        "| store | client p50 | client p99 | server lookup p50 | server lookup p99 | lookups |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, key in (("SQLite (embedded)", "hit_sqlite"), ("Redis (Unix socket)", "hit_redis")):
        hit = results.get(key)
        if hit:
            c, s = hit["client_ms"], hit["lookup_ms"]
            lines.append(
                f"| {name} | {c['p50']:.2f} | {c['p99']:.2f} | {s['p50']:.3f} | {s['p99']:.3f} "
                f"| {s['n']} |"
            )
    lines.append("")
    return lines


def _load(results: dict[str, Any]) -> str:
    load = results.get("load")
    return f" (load average {load[0]:.1f} at the start, {load[1]:.1f} at the end)" if load else ""


def insert(report: Path, lines: list[str]) -> None:
    """Put the section into an existing report, before the per-instance table, replacing an
    earlier version of it."""
    text = report.read_text().split("\n")
    if TITLE in text:
        start = text.index(TITLE)
        end = next(i for i in range(start + 1, len(text)) if text[i].startswith("## "))
        del text[start:end]
    anchor = next(i for i, line in enumerate(text) if line.startswith("## Per-instance times"))
    text[anchor:anchor] = lines
    report.write_text("\n".join(text))
