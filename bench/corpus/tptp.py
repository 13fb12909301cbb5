"""The TPTP problems of E's example set (from E's Debian source package).

Their headers carry the TPTP library's own status and difficulty rating. Includes are inlined,
since a prover only ever sees the one problem file that the service writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from bench.corpus.manifest import Instance

_INCLUDE = re.compile(r"^\s*include\(\s*'(?P<path>[^']+)'\s*(,\s*\[(?P<names>[^]]*)\])?\s*\)\.")

# TPTP SZS statuses, in proofrace's verdict terms.
_EXPECTED = {
    "Theorem": "proved",
    "Unsatisfiable": "proved",
    "ContradictoryAxioms": "proved",
    "CounterSatisfiable": "refuted",
    "Satisfiable": "refuted",
}


def inline_includes(text: str, root: Path, depth: int = 0) -> str:
    """`text` with each `include('Axioms/X.ax').` replaced by that file, read under `root`."""
    if depth > 8:
        raise ValueError("TPTP includes nest too deep")
    out = []
    for line in text.splitlines(keepends=True):
        found = _INCLUDE.match(line)
        if found is None:
            out.append(line)
            continue
        if found.group("names"):
            raise ValueError(f"selective include not supported: {line.strip()}")
        included = (root / found.group("path")).read_text()
        out.append(f"%--- inlined: {found.group('path')}\n")
        out.append(inline_includes(included, root, depth + 1))
        out.append(f"%--- end of {found.group('path')}\n")
    return "".join(out)


def header_field(text: str, name: str) -> str | None:
    found = re.search(rf"^%\s*{name}\s*:\s*(.*)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


def latest_rating(text: str) -> float | None:
    """`% Rating : 0.05 v6.3.0, 0.12 v6.2.0, ...`: the first entry is the latest."""
    field = header_field(text, "Rating")
    found = re.match(r"([01]\.\d+)", field or "")
    return float(found.group(1)) if found else None


def collect(
    source_tree: Path, version: str, out: Path, say: Callable[[str], None] = print
) -> list[Instance]:
    """Writes self-contained problems under `out/tptp-e/` and describes them. A problem whose
    axiom file is missing from the set is left out, with a message."""
    problems = source_tree / "EXAMPLE_PROBLEMS" / "TPTP"
    target = out / "tptp-e"
    target.mkdir(parents=True, exist_ok=True)
    instances = []
    for problem in sorted(problems.glob("*.p")):
        text = problem.read_text()
        status = header_field(text, "Status") or ""
        try:
            whole = inline_includes(text, problems)
        except FileNotFoundError as missing:
            say(f"corpus: leaving out {problem.name}: {Path(missing.filename).name} is not shipped")
            continue
        (target / problem.name).write_text(whole)
        instances.append(
            Instance(
                name=f"tptp-e/{problem.stem}",
                path=f"tptp-e/{problem.name}",
                format="tptp",
                source="tptp-e",
                family=problem.stem[:3],  # the TPTP domain: SET, GRP, ...
                origin=(
                    f"TPTP library problem {problem.stem}, as shipped in E's example set "
                    f"(Debian source package eprover {version}, EXAMPLE_PROBLEMS/TPTP/)"
                ),
                expected=_EXPECTED.get(status),
                rating=latest_rating(text),
                notes=f"TPTP status {status}; includes inlined",
            )
        )
    return instances
