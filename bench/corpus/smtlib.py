"""CNF to SMT-LIB2: one Boolean constant per variable, one assertion per clause."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _literal(lit: int) -> str:
    return f"x{lit}" if lit > 0 else f"(not x{-lit})"


def from_clauses(
    variables: int,
    clauses: Iterable[Sequence[int]],
    *,
    status: str | None = None,
    comment: str = "",
) -> str:
    """`status` is SMT-LIB's own `sat`/`unsat` annotation, when the answer is known."""
    lines = [f"; {line}" for line in comment.splitlines()]
    lines.append("(set-logic QF_UF)")
    if status:
        lines.append(f"(set-info :status {status})")
    lines += [f"(declare-const x{v} Bool)" for v in range(1, variables + 1)]
    for clause in clauses:
        if not clause:
            lines.append("(assert false)")
        elif len(clause) == 1:
            lines.append(f"(assert {_literal(clause[0])})")
        else:
            lines.append(f"(assert (or {' '.join(_literal(lit) for lit in clause)}))")
    lines += ["(check-sat)", "(exit)"]
    return "\n".join(lines) + "\n"


def to_dimacs(variables: int, clauses: Sequence[Sequence[int]], comment: str = "") -> str:
    lines = [f"c {line}" for line in comment.splitlines()]
    lines.append(f"p cnf {variables} {len(clauses)}")
    lines += [" ".join(map(str, clause)) + " 0" for clause in clauses]
    return "\n".join(lines) + "\n"
