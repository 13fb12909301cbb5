"""CaDiCaL's regression CNFs (from its Debian source package, `test/cnf/`).

Their expected answers come from the package's own test script, `test/cnf/run.sh`, which
runs each file expecting exit code 10 (satisfiable) or 20 (unsatisfiable).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from bench.corpus.manifest import Instance

_EXIT_CODES = {"10": "refuted", "20": "proved"}


def expected_answers(run_script: str) -> dict[str, str]:
    return {
        name: _EXIT_CODES[code]
        for name, code in re.findall(r"^run (\S+) (10|20)\s*$", run_script, re.MULTILINE)
    }


def _family(stem: str) -> str:
    return re.sub(r"\d+(neg|pos)?$", "", stem) or stem


def collect(
    source_tree: Path, version: str, out: Path, say: Callable[[str], None] = print
) -> list[Instance]:
    tests = source_tree / "test" / "cnf"
    expected = expected_answers((tests / "run.sh").read_text())
    target = out / "cadical-tests"
    target.mkdir(parents=True, exist_ok=True)
    instances = []
    for cnf in sorted(tests.glob("*.cnf")):
        if cnf.stem not in expected:
            say(f"corpus: leaving out {cnf.name}: its test script gives no expected answer")
            continue
        shutil.copyfile(cnf, target / cnf.name)
        instances.append(
            Instance(
                name=f"cadical-tests/{cnf.stem}",
                path=f"cadical-tests/{cnf.name}",
                format="dimacs",
                source="cadical-tests",
                family=_family(cnf.stem),
                origin=f"CaDiCaL test/cnf/{cnf.name} (Debian source package cadical {version})",
                expected=expected[cnf.stem],
            )
        )
    return instances
