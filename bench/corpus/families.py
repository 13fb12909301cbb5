"""Published hard families, generated with python-sat's `pysat.examples.genhard`.

All are unsatisfiable. The first three are known to be hard for resolution, and so for CDCL
SAT solvers; the ordering principle has short resolution proofs, but not every solver finds them.
- pigeonhole: n+1 pigeons in n holes;
- chessboard: domino tiling of a 2n x 2n board with two opposite corners removed;
- parity: a perfect matching on 2n+1 nodes;
- ordering: a partial order on n elements without a maximal element.
Each is written in DIMACS and translated to SMT-LIB2 (one Boolean constant per variable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.corpus import smtlib
from bench.corpus.manifest import Instance


def _generators() -> dict[str, Callable[[int], Any]]:
    from pysat.examples import genhard  # a bench extra: imported only when generating

    return {
        "pigeonhole": genhard.PHP,
        "chessboard": genhard.CB,
        "parity": genhard.PAR,
        "ordering": genhard.GT,
    }


_CLASS = {"pigeonhole": "PHP", "chessboard": "CB", "parity": "PAR", "ordering": "GT"}

# Sizes picked on a 2-core machine so that times spread from milliseconds to past the timeout.
FULL_SIZES: Mapping[str, Sequence[int]] = {
    "pigeonhole": (6, 7, 8, 9),
    "chessboard": (4, 5, 6),
    "parity": (5, 6),
    "ordering": (10, 20, 30),
}
# For the smoke test: each family once, each solved in milliseconds.
TINY_SIZES: Mapping[str, Sequence[int]] = {
    "pigeonhole": (4,),
    "chessboard": (2,),
    "parity": (3,),
    "ordering": (5,),
}


def collect(out: Path, sizes: Mapping[str, Sequence[int]] = FULL_SIZES) -> list[Instance]:
    target = out / "genhard"
    target.mkdir(parents=True, exist_ok=True)
    generators = _generators()
    release = version("python-sat")
    instances = []
    for family, family_sizes in sizes.items():
        for size in family_sizes:
            formula = generators[family](size)
            clauses = [list(c) for c in formula.clauses]
            stem = f"{family}-{size}"
            origin = f"pysat.examples.genhard.{_CLASS[family]}({size}) from python-sat {release}"
            (target / f"{stem}.cnf").write_text(
                smtlib.to_dimacs(formula.nv, clauses, comment=origin)
            )
            (target / f"{stem}.smt2").write_text(
                smtlib.from_clauses(
                    formula.nv,
                    clauses,
                    status="unsat",
                    comment=f"{origin}, translated from DIMACS",
                )
            )
            for suffix, fmt, how in ((".cnf", "dimacs", ""), (".smt2", "smtlib2", "; as SMT")):
                instances.append(
                    Instance(
                        name=f"genhard/{stem}{suffix}",
                        path=f"genhard/{stem}{suffix}",
                        format=fmt,
                        source="genhard",
                        family=family,
                        origin=origin + how,
                        expected="proved",
                        notes="translated from DIMACS, one Boolean per variable"
                        if fmt == "smtlib2"
                        else "",
                    )
                )
    return instances
