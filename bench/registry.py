"""The extra prover entries the benchmark's server gets, beside the built-in ones:
- cadical-0..3 and minisat-0..3: the diversified SAT portfolio of bench/core.py;
- z3-N and cvc5-N: the SMT solvers with a random seed, as racing copies;
- sleeper: an attempt whose process only sleeps, to hold solves in flight at no CPU cost."""

from __future__ import annotations

import json
from pathlib import Path

from bench.core import portfolio_registry

SEEDED = 8

_SMT_RULES = "rules = [['^unsat$', \"proved\"], ['^sat$', \"refuted\"], ['^unknown$', \"unknown\"]]"


def _table(name: str, command: list[str], formats: str, rules: str) -> str:
    return (
        f'[{name}]\ncommand = {json.dumps(command)}\nformats = ["{formats}"]\n'
        f"default = false\n{rules}\n"
    )


def write(path: Path) -> Path:
    portfolio_registry(path)
    tables = [path.read_text()]
    for seed in range(1, SEEDED + 1):
        tables.append(
            _table(f"z3-{seed}", ["z3", "-smt2", f"smt.random_seed={seed}", "{input}"],
                   "smtlib2", _SMT_RULES)
        )  # fmt: skip
        tables.append(
            _table(f"cvc5-{seed}", ["cvc5", "--lang=smt2", f"--seed={seed}", "{input}"],
                   "smtlib2", _SMT_RULES)
        )  # fmt: skip
    tables.append(
        _table("sleeper", ["sh", "-c", "exec sleep 600", "sleeper", "{input}"], "dimacs",
               "rules = [['^never printed$', \"unknown\"]]")
    )  # fmt: skip
    path.write_text("\n".join(tables))
    return path


def seeded(solver: str, count: int) -> list[str]:
    return [f"{solver}-{seed}" for seed in range(1, count + 1)]
