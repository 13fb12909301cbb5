"""What a problem needs from a prover, read before racing; and the one spelling of each thing
where a standard allows two.

TPTP features:
- `cnf`, `fof`, `tff`, `thf`, `tcf`: the languages its formulas are written in;
- `arithmetic`: the arithmetic types and functions (`$int`, `$sum`, `$less`, ...);
- `numbers`: numbers as terms; TPTP gives them their arithmetic meaning (distinct numbers
  are unequal), which a prover taking them for plain constants gets wrong;
- `distinct`: distinct objects, `"..."`, unequal to each other by definition;
- `quoted`: quoted names, `'A name'`, that stay quoted after normalising;
- `include`: includes of other files, which the server cannot resolve.
SMT-LIB features: `logic:<name>` from `set-logic` (`logic:none` without one).

Normalising (the text every prover is given):
- TPTP: a quoted name whose content is a plain lower word (`'c'`) is by the standard the
  same symbol as the word (`c`); E 2.6 takes them for two symbols, so the quotes are dropped.
- SMT-LIB: `(declare-const x S)` is by the standard `(declare-fun x () S)`; the second is
  read by every solver, Boolector 1.5 included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from proofrace.core.model import Format

# The race waits for this, and a TPTP problem may be megabytes of formulas: every scan is a
# C-speed one (find, translate, a regex with a literal prefix), and a Python loop only looks at
# the places it found, stopping at the first that counts.
_UNITS = ("cnf", "fof", "tff", "thf", "tcf", "include")
_LOWER_WORD_QUOTED = re.compile(rb"'([a-z][A-Za-z0-9_]*)'")
_ARITHMETIC = re.compile(
    rb"\$(int|rat|real|sum|difference|product|quotient(_[eft])?|remainder_[eft]|floor|ceiling"
    rb"|truncate|round|uminus|less|lesseq|greater|greatereq|is_int|is_rat|to_int|to_rat"
    rb"|to_real)\b"
)
# Digits become 0 and whatever may come before a number as a term becomes "(": a number
# starts wherever "(0" is found.
_TERM_START = b"(,=[ \t\n@|&~<>:!+-"
_NUMBER_VIEW = bytes.maketrans(b"0123456789" + _TERM_START, b"0" * 10 + b"(" * len(_TERM_START))
_FORMULA_NAME = re.compile(rb"(?:cnf|fof|tff|thf|tcf)[ \t]*\([ \t]*$")

_SET_LOGIC = re.compile(rb"\(\s*set-logic\s+([^\s()]+)\s*\)")
_DECLARE_CONST = re.compile(rb"\(\s*declare-const(\s+)(\|[^|]*\||[^\s()|]+)(\s)")
_SMT_NOISE = re.compile(rb';[^\n]*|"(?:[^"]|"")*"|\|[^|]*\|')


@dataclass(frozen=True)
class Reading:
    """A problem as the race sees it: the text provers get, and what it needs of them."""

    content: bytes
    needs: frozenset[str]


def read(content: bytes, problem_format: Format) -> Reading:
    if problem_format is Format.TPTP:
        return _read_tptp(content)
    if problem_format is Format.SMTLIB2:
        return _read_smtlib(content)
    return Reading(_read_dimacs(content), frozenset())


_SATLIB_END = re.compile(rb"^[ \t]*%[ \t\r]*$", re.MULTILINE)


def _read_dimacs(content: bytes) -> bytes:
    """One clause per line, ending at SATLIB's `%` line.

    DIMACS lets a clause span lines, and several share one; CryptoMiniSat rejects both.
    SATLIB's files (uf20-91 and kin) end the formula with a line `%` then `0`, which every
    solver here rejects or, for z3, reads as an error followed by `sat`.
    """
    end = _SATLIB_END.search(content)
    if end is not None:
        content = content[: end.start()]
    if not _unterminated(content) and not _SHARED_LINE.search(content):
        return content
    lines = content.split(b"\n")
    header: list[bytes] = []
    clauses: list[bytes] = []
    current: list[bytes] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped[:1] in (b"c", b"p"):
            header.append(line)
            continue
        for token in stripped.split():
            if token == b"0":
                clauses.append(b" ".join([*current, b"0"]))
                current = []
            else:
                current.append(token)
    if current:
        clauses.append(b" ".join([*current, b"0"]))
    return b"\n".join([*header, *clauses]) + b"\n"


# A clause line whose last token is not the terminating 0 (it ends in 3, or in 10), and a 0
# followed by more literals on its line.
# (Both are searched for at C speed: a problem may be megabytes.)
_ENDS_IN_NUMBER = re.compile(rb"(?:[1-9]|[0-9]0)[ \t\r]*(?:\n|$)")
_SHARED_LINE = re.compile(rb"[ \t\n]0[ \t]+-?[1-9]")


def _unterminated(content: bytes) -> bool:
    for found in _ENDS_IN_NUMBER.finditer(content):
        start = content.rfind(b"\n", 0, found.start()) + 1
        if content[start : found.start()].lstrip()[:1] not in (b"c", b"p"):
            return True
    return False


def handles(supported: frozenset[str] | None, needs: frozenset[str]) -> bool:
    """Whether a prover declaring `supported` (None: everything) reads a problem."""
    return supported is None or needs <= supported


def _read_tptp(content: bytes) -> Reading:
    text = _LOWER_WORD_QUOTED.sub(rb"\1", content) if b"'" in content else content
    needs = {name for name in _UNITS if _starts_a_unit(text, name.encode())}
    numbers = text.translate(_NUMBER_VIEW)
    for feature, places in (
        ("quoted", _finds(text, b"'")),
        ("distinct", _finds(text, b'"')),
        ("arithmetic", (m.start() for m in _ARITHMETIC.finditer(text))),
        ("numbers", (at + 1 for at in _finds(numbers, b"(0"))),
    ):
        if any(_in_formula(text, at) for at in places):
            needs.add(feature)
    return Reading(text, frozenset(needs))


def _finds(text: bytes, needle: bytes) -> Iterator[int]:
    at = text.find(needle)
    while at >= 0:
        yield at
        at = text.find(needle, at + 1)


def _starts_a_unit(text: bytes, name: bytes) -> bool:
    for at in _finds(text, name):
        before = text[text.rfind(b"\n", 0, at) + 1 : at]
        if not before.strip() and text[at + len(name) : at + len(name) + 8].lstrip()[:1] == b"(":
            return True
    return False


def _in_formula(text: bytes, at: int) -> bool:
    """Not in a `%` comment, not inside a quoted name or a distinct object (names often hold
    digits: `'holds(266, 0)'`), and not a formula's name (`cnf(12, ...`). Block comments are
    taken for formulas: a feature seen there costs a prover, never a wrong answer."""
    line = text[text.rfind(b"\n", 0, at) + 1 : at]
    if line.count(b"'") % 2 or line.count(b'"') % 2:
        return False
    return b"%" not in line and not _FORMULA_NAME.search(line)


def _read_smtlib(content: bytes) -> Reading:
    quiet = _SMT_NOISE.sub(lambda m: b" " * len(m.group()), content)
    logic = _SET_LOGIC.search(quiet)
    name = logic.group(1).decode(errors="replace") if logic else "none"
    normalised = _declare_const_as_fun(content, quiet)
    return Reading(normalised, frozenset({f"logic:{name}"}))


def _declare_const_as_fun(content: bytes, quiet: bytes) -> bytes:
    """Rewrites declarations outside comments, strings and quoted symbols (`quiet` is the
    text with those blanked, same offsets)."""
    pieces: list[bytes] = []
    last = 0
    for found in _DECLARE_CONST.finditer(quiet):
        name = content[found.start(2) : found.end(2)]
        pieces += [content[last : found.start()], b"(declare-fun", found.group(1), name, b" ()"]
        last = found.end(2)
    pieces.append(content[last:])
    return b"".join(pieces)


def describe(needs: frozenset[str]) -> str:
    return ", ".join(sorted(needs)) or "nothing special"
