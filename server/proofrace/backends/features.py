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
from dataclasses import dataclass

from proofrace.core.model import Format

TPTP_LANGUAGES = ("cnf", "fof", "tff", "thf", "tcf")

_TPTP_TOKEN = re.compile(
    rb"""(?P<comment>%[^\n]*|/\*.*?\*/)"""
    rb"""|(?P<quoted>'(?:[^'\\]|\\.)*')"""
    rb"""|(?P<distinct>"(?:[^"\\]|\\.)*")"""
    rb"""|(?P<word>\$\$?[A-Za-z0-9_]+|[A-Za-z][A-Za-z0-9_]*)"""
    rb"""|(?P<number>[+-]?[0-9]+(?:[./][0-9]+)?(?:[Ee][+-]?[0-9]+)?)"""
    rb"""|(?P<open>\()|(?P<close>\))"""
    rb"""|(?P<other>\s+|.)""",
    re.DOTALL,
)
_LOWER_WORD = re.compile(rb"^'([a-z][A-Za-z0-9_]*)'$")
_ARITHMETIC = {
    b"$int", b"$rat", b"$real", b"$sum", b"$difference", b"$product", b"$quotient",
    b"$quotient_e", b"$quotient_t", b"$quotient_f", b"$remainder_e", b"$remainder_t",
    b"$remainder_f", b"$floor", b"$ceiling", b"$truncate", b"$round", b"$uminus", b"$less",
    b"$lesseq", b"$greater", b"$greatereq", b"$is_int", b"$is_rat", b"$to_int", b"$to_rat",
    b"$to_real",
}  # fmt: skip

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
    return Reading(content, frozenset())


def handles(supported: frozenset[str] | None, needs: frozenset[str]) -> bool:
    """Whether a prover declaring `supported` (None: everything) reads a problem."""
    return supported is None or needs <= supported


def _read_tptp(content: bytes) -> Reading:
    needs: set[str] = set()
    out: list[bytes] = []
    depth = 0
    argument = 0  # of the annotated formula: 0 name, 1 role, 2 formula, 3+ annotations
    for token in _TPTP_TOKEN.finditer(content):
        kind, text = token.lastgroup, token.group()
        in_formula = depth > 0 and argument == 2
        if kind == "open":
            depth += 1
            argument = 0 if depth == 1 else argument
        elif kind == "close":
            depth = max(0, depth - 1)
        elif kind == "other" and text == b"," and depth == 1:
            argument += 1
        elif kind == "word" and depth == 0:
            word = text.decode()
            if word in TPTP_LANGUAGES or word == "include":
                needs.add(word)
        elif kind == "quoted":
            plain = _LOWER_WORD.match(text)
            if plain:
                text = plain.group(1)
            elif in_formula:
                needs.add("quoted")
        elif in_formula and kind == "word" and text in _ARITHMETIC:
            needs.add("arithmetic")
        elif in_formula and kind == "number":
            needs.add("numbers")
        elif in_formula and kind == "distinct":
            needs.add("distinct")
        out.append(text)
    return Reading(b"".join(out), frozenset(needs))


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
