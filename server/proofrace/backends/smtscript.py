"""Just enough SMT-LIB to check a model: read a script's commands, and write one in which
the model's definitions replace the declarations they define.

The check script keeps the problem's assertions and gives every symbol the model defines its
value, so a solver only has to evaluate: `sat` confirms the model, `unsat` refutes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Sexp = str | list["Sexp"]

_TOKEN = re.compile(
    r"""\s+|;[^\n]*|(?P<open>\()|(?P<close>\))|(?P<string>"(?:[^"]|"")*")|(?P<quoted>\|[^|]*\|)|(?P<atom>[^\s()";|]+)""",
    re.DOTALL,
)


class SyntaxProblem(ValueError):
    """Text that is not a sequence of well-formed s-expressions."""


def parse(text: str) -> list[Sexp]:
    """Every top-level s-expression in `text`, atoms kept as written."""
    stack: list[list[Sexp]] = [[]]
    position = 0
    while position < len(text):
        token = _TOKEN.match(text, position)
        if token is None:
            raise SyntaxProblem(f"unreadable text at offset {position}")
        position = token.end()
        if token.group("open"):
            stack.append([])
        elif token.group("close"):
            if len(stack) == 1:
                raise SyntaxProblem(f"unbalanced ')' at offset {token.start()}")
            done = stack.pop()
            stack[-1].append(done)
        elif kind := token.lastgroup:
            stack[-1].append(token.group(kind))
    if len(stack) != 1:
        raise SyntaxProblem("unbalanced '('")
    return stack[0]


def render(sexp: Sexp) -> str:
    if isinstance(sexp, str):
        return sexp
    return "(" + " ".join(render(s) for s in sexp) + ")"


def head(sexp: Sexp) -> str:
    return sexp[0] if isinstance(sexp, list) and sexp and isinstance(sexp[0], str) else ""


@dataclass(frozen=True)
class Script:
    commands: list[Sexp]

    @property
    def checkable(self) -> bool:
        """One check-sat over one assertion stack: a model answers exactly that."""
        heads = [head(c) for c in self.commands]
        return heads.count("check-sat") == 1 and not {
            "push",
            "pop",
            "reset",
            "reset-assertions",
            "check-sat-assuming",
        } & set(heads)


def read_script(text: str) -> Script:
    return Script(parse(text))


# Commands that only tell the solver how to behave or what to print: the check leaves them out.
_DROPPED = {
    "check-sat",
    "get-model",
    "get-value",
    "get-assignment",
    "get-info",
    "get-option",
    "get-proof",
    "get-unsat-core",
    "set-option",
    "set-info",
    "echo",
    "exit",
}


# z3 also prints the cardinality of each uninterpreted sort as a `forall`: the check states it
# its own way (distinct elements).
_MODEL_ENTRIES = {"define-fun", "declare-fun", "define-fun-rec", "forall"}


def read_model(output: str) -> list[Sexp] | None:
    """The definitions of the first model printed after the `sat` line, or None."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "sat")
    except StopIteration:
        return None
    try:
        printed = parse("\n".join(lines[start + 1 :]))
    except SyntaxProblem:
        return None
    for block in printed:
        if not isinstance(block, list):
            continue
        entries = block[1:] if head(block) == "model" else block
        if all(head(e) in _MODEL_ENTRIES for e in entries):
            return [e for e in entries if head(e) != "forall"]
    return None


def check_script(script: Script, model: list[Sexp]) -> str:
    """The problem with the model's values in place of its declarations, then one check-sat.

    z3 names the elements of an uninterpreted sort `U!val!0` and declares them in its model;
    cvc5 writes `(as @U_0 U)`. Both become constants declared right after their sort, pairwise
    distinct: a model with n elements means n different ones.
    """
    definitions: dict[str, Sexp] = {}
    elements: dict[str, list[str]] = {}  # sort -> its elements' names, as the check declares them
    for entry in model:
        if head(entry) == "declare-fun" and len(entry) == 4 and entry[2] == []:
            name, sort = entry[1], entry[3]
            if isinstance(name, str) and isinstance(sort, str):
                elements.setdefault(sort, []).append(name)
        elif head(entry) in ("define-fun", "define-fun-rec") and isinstance(entry[1], str):
            definitions[entry[1]] = _rename_cvc5_elements(entry, elements)
    lines: list[str] = []
    for command in script.commands:
        name = head(command)
        if name in _DROPPED:
            continue
        if name in ("declare-fun", "declare-const") and len(command) >= 2:
            symbol = command[1]
            if isinstance(symbol, str) and symbol in definitions:
                lines.append(render(definitions.pop(symbol)))
                continue
        lines.append(render(command))
        if name == "declare-sort" and isinstance(command[1], str):
            lines += _declare_elements(elements.pop(command[1], []), command[1])
    lines.append("(check-sat)")
    return "\n".join(lines) + "\n"


def _declare_elements(names: list[str], sort: str) -> list[str]:
    declared = [f"(declare-const {n} {sort})" for n in names]
    if len(names) > 1:
        declared.append(f"(assert (distinct {' '.join(names)}))")
    return declared


def _rename_cvc5_elements(sexp: Sexp, elements: dict[str, list[str]]) -> Sexp:
    if isinstance(sexp, str):
        return sexp
    if len(sexp) == 3 and sexp[0] == "as" and isinstance(sexp[1], str) and sexp[1][:1] == "@":
        sort = sexp[2]
        name = f"|model element {sexp[1][1:]}|"  # names starting with @ are reserved
        if isinstance(sort, str):
            known = elements.setdefault(sort, [])
            if name not in known:
                known.append(name)
        return name
    return [_rename_cvc5_elements(s, elements) for s in sexp]
