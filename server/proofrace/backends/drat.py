"""A forward DRAT proof checker, run as its own process: `python -m proofrace.backends.drat
PROBLEM.cnf PROOF.drat`. Prints `s VERIFIED` (exit 0) or `s NOT VERIFIED` with the reason
(exit 1); anything else (unreadable files, a resource limit) is no verdict.

Each added lemma must be RUP (assigning its negation and propagating units over the clauses
so far reaches a conflict) or RAT on its first literal; deletions remove a clause. The proof
is accepted once the empty clause is derived, or once propagating the clauses so far reaches
a conflict at the end. Deleting unit clauses is ignored, as drat-trim does by default.
Textual DRAT only; SAT solvers' default. Forward checking costs more than backward checking
with core trimming, so this is for small and medium proofs: the caller bounds its time.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterator

Clause = tuple[int, ...]


def read_dimacs(text: str) -> list[Clause]:
    clauses: list[Clause] = []
    current: list[int] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "cp":
            continue
        if line[0] == "%":  # SATLIB files end with "%"
            break
        for token in line.split():
            literal = int(token)
            if literal == 0:
                clauses.append(tuple(current))
                current = []
            else:
                current.append(literal)
    if current:
        clauses.append(tuple(current))
    return clauses


def read_proof(text: str) -> Iterator[tuple[bool, Clause]]:
    """(deleted, clause) per proof line."""
    for line in text.splitlines():
        tokens = line.split()
        if not tokens or tokens[0] == "c":
            continue
        deleted = tokens[0] == "d"
        literals = [int(t) for t in (tokens[1:] if deleted else tokens)]
        if literals and literals[-1] == 0:
            literals.pop()
        yield deleted, tuple(literals)


class Database:
    """Clauses with a count per clause; propagation by a plain scan to a fixpoint, using an
    occurrence list so that only clauses touching a falsified literal are looked at again."""

    def __init__(self) -> None:
        self.clauses: dict[Clause, int] = defaultdict(int)
        self.occurs: dict[int, set[Clause]] = defaultdict(set)

    def add(self, clause: Clause) -> None:
        key = tuple(sorted(set(clause)))
        self.clauses[key] += 1
        for literal in key:
            self.occurs[literal].add(key)

    def delete(self, clause: Clause) -> None:
        key = tuple(sorted(set(clause)))
        if len(key) == 1 or self.clauses.get(key, 0) == 0:
            return
        self.clauses[key] -= 1
        if self.clauses[key] == 0:
            del self.clauses[key]
            for literal in key:
                self.occurs[literal].discard(key)

    def conflicts(self, assumptions: set[int]) -> bool:
        """Propagating units under `assumptions` reaches a conflict."""
        assigned = set(assumptions)
        if any(-lit in assigned for lit in assigned):
            return True
        pending = list(self.clauses) if not assumptions else self._touched(assigned)
        units = [c for c in self.clauses if len(c) == 1]
        pending += units
        while pending:
            clause = pending.pop()
            unassigned = None
            satisfied = False
            count = 0
            for literal in clause:
                if literal in assigned:
                    satisfied = True
                    break
                if -literal not in assigned:
                    count += 1
                    unassigned = literal
                    if count > 1:
                        break
            if satisfied or count > 1:
                continue
            if count == 0:
                return True
            assert unassigned is not None
            assigned.add(unassigned)
            pending.extend(self.occurs.get(-unassigned, ()))
        return False

    def _touched(self, assigned: set[int]) -> list[Clause]:
        touched: list[Clause] = []
        for literal in assigned:
            touched.extend(self.occurs.get(-literal, ()))
        return touched

    def rup(self, lemma: Clause) -> bool:
        return self.conflicts({-lit for lit in lemma})

    def rat(self, lemma: Clause) -> bool:
        if not lemma:
            return False
        pivot = lemma[0]
        for other in list(self.occurs.get(-pivot, ())):
            resolvent = set(lemma) | {lit for lit in other if lit != -pivot}
            if any(-lit in resolvent for lit in resolvent):
                continue  # a tautology
            if not self.conflicts({-lit for lit in resolvent}):
                return False
        return True


def check(problem: str, proof: str) -> tuple[bool, str]:
    db = Database()
    for clause in read_dimacs(problem):
        if not clause:
            return True, "the problem contains the empty clause"
        db.add(clause)
    if db.conflicts(set()):
        return True, "unit propagation refutes the problem"
    for number, (deleted, lemma) in enumerate(read_proof(proof), start=1):
        if deleted:
            db.delete(lemma)
            continue
        if not (db.rup(lemma) or db.rat(lemma)):
            return False, f"lemma {number} ({' '.join(map(str, lemma))} 0) is neither RUP nor RAT"
        if not lemma:
            return True, f"the empty clause at lemma {number}"
        db.add(lemma)
    if db.conflicts(set()):
        return True, "unit propagation refutes the clauses derived"
    return False, "the proof ends without deriving the empty clause"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m proofrace.backends.drat PROBLEM PROOF", file=sys.stderr)
        return 2
    with open(argv[0], encoding="ascii", errors="replace") as p, open(argv[1]) as q:
        verified, why = check(p.read(), q.read())
    print(f"s {'VERIFIED' if verified else 'NOT VERIFIED'}\nc {why}")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
