"""Write the pigeonhole problem PHP(n, n-1) as DIMACS and SMT-LIB2 (unsatisfiable for every n).

Usage: python scripts/make_pigeonhole.py N OUT_PREFIX
"""

from __future__ import annotations

import sys


def clauses(pigeons: int, holes: int) -> list[list[int]]:
    def var(p: int, h: int) -> int:
        return p * holes + h + 1

    out = [[var(p, h) for h in range(holes)] for p in range(pigeons)]
    for h in range(holes):
        for a in range(pigeons):
            for b in range(a + 1, pigeons):
                out.append([-var(a, h), -var(b, h)])
    return out


def main() -> None:
    if len(sys.argv) != 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 2:
        sys.exit(f"usage: {sys.argv[0]} PIGEONS OUT_PREFIX  (PIGEONS >= 2; writes .cnf and .smt2)")
    pigeons, prefix = int(sys.argv[1]), sys.argv[2]
    holes = pigeons - 1
    cls = clauses(pigeons, holes)
    nvars = pigeons * holes
    header = f"c pigeonhole: {pigeons} pigeons, {holes} holes (unsatisfiable)\n"
    with open(f"{prefix}.cnf", "w") as f:
        f.write(header + f"p cnf {nvars} {len(cls)}\n")
        f.writelines(" ".join(map(str, c)) + " 0\n" for c in cls)
    with open(f"{prefix}.smt2", "w") as f:
        f.write(f"; pigeonhole: {pigeons} pigeons, {holes} holes (unsatisfiable)\n")
        f.write("(set-logic QF_UF)\n")
        f.writelines(f"(declare-const x{i} Bool)\n" for i in range(1, nvars + 1))
        for c in cls:
            lits = " ".join(f"x{v}" if v > 0 else f"(not x{-v})" for v in c)
            f.write(f"(assert (or {lits}))\n")
        f.write("(check-sat)\n")


if __name__ == "__main__":
    main()
