"""`python -m bench.cache --smoke` end to end: a tiny generated corpus solved cold, then warm
from the cache, and cache hits on SQLite and on a private Redis. Nothing here checks a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import REPO

sys.path.insert(0, str(REPO))

from bench import cache_report


def test_a_warm_rerun_starts_no_prover_for_a_decided_instance(tmp_path: Path) -> None:
    out = tmp_path / "cache.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.cache", "--smoke", "--corpus", str(tmp_path / "corpus"),
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    cold, warm = results["cold"], results["warm"]
    undecided = cold["instances"] - cold["decided"]
    assert cold["provers_started"] >= 2 * (cold["instances"] - cold["sources"].get("cache", 0))
    assert warm["sources"].get("cache", 0) == cold["decided"]
    assert warm["provers_started"] == 2 * undecided
    assert warm["verdicts"] == cold["verdicts"]
    for store in ("hit_sqlite", "hit_redis"):
        assert results[store]["client_ms"]["n"] == results["hits"]
    section = cache_report.section(tmp_path)
    assert section[0] == cache_report.TITLE and any("Redis" in line for line in section)
