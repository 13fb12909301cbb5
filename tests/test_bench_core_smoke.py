"""`python bench/core.py` end to end at its smallest: every part runs (proofrace, the bare
loop, direct spawns, the minimal pycapnp server, remote workers, the sandbox) and every figure
and ratio comes out, and `bench/ab.py` compares two revisions. Nothing here checks a timing."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import REPO

FIGURES = {
    "cancel_p50_ms", "cancel_p99_ms", "drop_p50_ms", "drop_p99_ms",
    "cancel_vs_bare_p50", "cancel_vs_bare_p99", "drop_vs_bare_p50", "drop_vs_bare_p99",
    "trivial_vs_direct", "throughput_vs_direct", "dispatcher_cpu_ms",
    "cancel_vs_minimal_p50", "drop_vs_minimal_p50", "trivial_vs_minimal",
    "throughput_vs_minimal",
}  # fmt: skip


def test_every_figure_of_the_core_benchmark_comes_out(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("minimal-*"))
    done = subprocess.run(
        [sys.executable, "bench/core.py", "--runs", "2", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(out.read_text())
    assert set(figures["ratios"]) == FIGURES
    assert all(value > 0 for value in figures["ratios"].values())
    stops = figures["preemption"]
    assert {kind: len(times) for kind, times in stops.items()} == {
        kind: 2 for kind in ("cancel", "drop", "bare", "minimal_cancel", "minimal_drop")
    }
    assert "Against the minimal pycapnp server" in done.stdout
    assert set(scratch.glob("minimal-*")) == before  # the minimal server's scratch root went


def test_two_versions_side_by_side_give_every_figure() -> None:
    """`bench/ab.py` against this very checkout: both servers start (the base one from a copy
    of the package on PYTHONPATH), and every figure comes out for both, in one table."""
    done = subprocess.run(
        [sys.executable, "bench/ab.py", "--base", str(REPO), "--rounds", "1", "--solves", "2",
         "--each", "1", "--stops", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    rows = {line[:38].strip(): line.split() for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {
        "trivial solve, ms", "solves/s at 32 clients", "server CPU per solve, ms",
        "cancel → 8 reaped, ms", "drop → 8 reaped, ms",
    }  # fmt: skip
    assert all(row[-3:] == ["of", "1", "rounds"] for row in rows.values())
