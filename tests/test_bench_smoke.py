"""The benchmark harness still works: `python -m bench --smoke` end to end (real server, real
provers, a tiny generated corpus that needs no apt source package), and the corpus parsers on
small texts. Benchmarks are not tests: nothing here checks a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import REPO

# `bench/` is a folder of the checkout, not an installed package.
sys.path.insert(0, str(REPO))

from bench.corpus import cadical, debian, smtlib, tptp


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text())


def test_the_smoke_run_writes_the_report_and_its_plots(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, results = smoke
    report = (out / "report.md").read_text()
    for section in ("## The machine", "## 1. Portfolio", "## 2. Preemption", "## 3. Service"):
        assert section in report
    for plot in ("latency-cdf.png", "portfolio-vs-sequential.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["machine"]["provers"]["z3"]["available"]


def test_every_instance_was_raced_and_answered_as_expected(
    smoke: tuple[Path, dict[str, Any]],
) -> None:
    out, results = smoke
    manifest = json.loads((out / "corpus" / "manifest.json").read_text())
    raced = results["portfolio"]
    assert {r["instance"]["name"] for r in raced} == {i["name"] for i in manifest["instances"]}
    assert {r["instance"]["format"] for r in raced} == {"dimacs", "smtlib2"}
    for r in raced:
        expected = r["instance"]["expected"]
        assert r["portfolio"]["answer"] == expected, r
        assert r["sequential"]["answer"] == expected, r
        assert r["winner"] in r["single"]


def test_every_latency_cell_accounts_for_its_races(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    plan, latency = results["plan"], results["latency"]
    assert latency["unavailable"] == {}
    samples = latency["samples"]
    for k in map(str, plan["attempts"]):
        assert len(samples["cancel"]["proofrace"][k]) == plan["latency_runs"]
        assert len(samples["cancel"]["polling"][k]) == plan["latency_runs"]
        assert len(samples["drop"]["proofrace"][k]) == plan["latency_runs"]
        for mechanism in ("proofrace", "polling", "pysmt"):
            # A first-success race that went another way is left out, and counted.
            kept = len(samples["first_success"][mechanism][k])
            assert kept + latency["spoiled"][mechanism][k] == plan["first_success_runs"]
    overhead = results["overhead"]
    assert len(overhead["trivial"]["service_ms"]) == plan["trivial_runs"]
    assert set(overhead["rate"]["service"]) == set(map(str, plan["clients"]))


def test_tptp_includes_are_inlined_and_the_header_read(tmp_path: Path) -> None:
    (tmp_path / "Axioms").mkdir()
    (tmp_path / "Axioms" / "SET001-0.ax").write_text("cnf(a, axiom, p).\n")
    problem = (
        "% Status   : Unsatisfiable\n"
        "% Rating   : 0.27 v6.4.0, 0.20 v6.3.0\n"
        "include('Axioms/SET001-0.ax').\n"
        "cnf(b, negated_conjecture, ~p).\n"
    )
    whole = tptp.inline_includes(problem, tmp_path)
    assert "include(" not in whole
    assert "cnf(a, axiom, p)." in whole
    assert tptp.latest_rating(problem) == 0.27
    assert tptp.header_field(problem, "Status") == "Unsatisfiable"


def test_cadical_expectations_come_from_its_test_script() -> None:
    script = "#!/bin/sh\nrun empty 10\nrun false 20\nrun ph5 20\nmsg done\n"
    assert cadical.expected_answers(script) == {
        "empty": "refuted",
        "false": "proved",
        "ph5": "proved",
    }


def test_dimacs_clauses_translate_to_smtlib() -> None:
    text = smtlib.from_clauses(2, [[1, -2], [2], []], status="unsat")
    assert "(declare-const x2 Bool)" in text
    assert "(assert (or x1 (not x2)))" in text
    assert "(assert x2)" in text
    assert "(assert false)" in text
    assert "(set-info :status unsat)" in text


def test_deb_src_entries_derive_from_the_systems_deb822_sources() -> None:
    sources = (
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/k.gpg\n\n"
        "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
        "Components: main\n"
    )
    entries = debian._deb822_entries(sources)
    assert [(e.suite, e.components, e.signed_by) for e in entries] == [
        ("bookworm", ("main",), "/usr/share/keyrings/k.gpg"),
        ("bookworm-updates", ("main",), "/usr/share/keyrings/k.gpg"),
    ]
    assert debian._one_line_entries("deb [arch=amd64] http://m.example/d bookworm main\n") == [
        debian.Entry("http://m.example/d", "bookworm", ("main",))
    ]
