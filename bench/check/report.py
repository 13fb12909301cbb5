"""docs/bench/check.md from the check runs and the certification costs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.check.run import MARKS

# The runs in the order the report shows them, when present.
ORDER = ("before", "after", "after-confirm")


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def write(results: Path, target: Path) -> None:
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    costs = runs.pop("cost", None)
    labels = [label for label in ORDER if label in runs] + [
        label for label in runs if label not in ORDER
    ]
    lines = [
        "# Check corpus: verdicts against known answers",
        "",
        "Problems whose answers are known (see `bench/check/corpus.py` for the sources), each",
        "solved once through a real server with `firstWins` and the server's default provers.",
        "Regenerate with `python -m bench.check corpus`, `run --label NAME [--confirm]`, `cost`,",
        "`report`. `before` is the service as it was before certification, faithful inputs and",
        "the new provers (run from that checkout, same corpus).",
        "",
        "## Verdicts",
        "",
        "| run | confirm | problems | " + " | ".join(MARKS) + " | median time | total time |",
        "|---|---|---|" + "---|" * len(MARKS) + "---|---|",
    ]
    for label in labels:
        run = runs[label]
        times = [r["seconds"] for r in run["results"]]
        lines.append(
            f"| {label} | {'yes' if run['settings'].get('confirm') else 'no'} | {len(times)} | "
            + " | ".join(str(run["counts"][m]) for m in MARKS)
            + f" | {_ms(statistics.median(times))} | {sum(times):.1f} s |"
        )
    lines += ["", "### By format", ""]
    formats = sorted({r["format"] for run in runs.values() for r in run["results"]})
    lines += ["| run | format | " + " | ".join(MARKS) + " |", "|---|---|" + "---|" * len(MARKS)]
    for label in labels:
        for fmt in formats:
            marks = [r["mark"] for r in runs[label]["results"] if r["format"] == fmt]
            lines.append(
                f"| {label} | {fmt} | " + " | ".join(str(marks.count(m)) for m in MARKS) + " |"
            )
    for label in labels:
        bad = [r for r in runs[label]["results"] if r["mark"] != "correct"]
        if not bad:
            continue
        lines += ["", f"### Not correct in `{label}`", ""]
        lines += ["| problem | expected | verdict | winner | attempts |", "|---|---|---|---|---|"]
        for r in bad:
            attempts = ", ".join(f"{p}: {a}" for p, a in r["attempts"].items())
            verdict = r["verdict"] + (f" (conflict: {r['conflict']})" if r.get("conflict") else "")
            lines.append(
                f"| {r['name']} | {r['expected']} | {verdict} | {r['winner'] or '-'} | {attempts} |"
            )
    if costs:
        lines += _cost_section(costs)
    target.write_text("\n".join(lines) + "\n")


def _cost_section(costs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Cost of certification per answer",
        "",
        "Each prover that leaves a certificate, run directly on every problem of its format;",
        "the time is that of checking the certificate (`python -m bench.check cost`).",
        "",
        "| certificate | answers | held | failed | unchecked | p50 | p99 | max | p50 of solving |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in sorted({c["kind"] for c in costs}):
        rows = [c for c in costs if c["kind"] == kind]
        checks = [c["check_s"] for c in rows]
        results = [c["result"] for c in rows]
        lines.append(
            f"| {kind} | {len(rows)} | {results.count('held')} | {results.count('failed')} | "
            f"{results.count('unchecked')} | {_ms(_quantile(checks, 0.5))} | "
            f"{_ms(_quantile(checks, 0.99))} | {_ms(max(checks))} | "
            f"{_ms(_quantile([c['solve_s'] for c in rows], 0.5))} |"
        )
    every = [c["check_s"] for c in costs]
    lines += [
        "",
        f"All certified answers together: p50 {_ms(_quantile(every, 0.5))}, "
        f"p99 {_ms(_quantile(every, 0.99))} over {len(every)} answers.",
    ]
    return lines
