"""The cache key: what makes two requests the same question, and what never does."""

from __future__ import annotations

import re
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from proofrace.cache.entry import entry_for
from proofrace.cache.key import cache_key, entry_digest
from proofrace.cache.normalise import normalise
from proofrace.core.model import (
    Format,
    Grounds,
    Problem,
    SolveOutcome,
    Strategy,
    Verdict,
)
from proofrace.race.plan import Plan

SMT = b"""; a comment
(set-logic QF_LIA)
(declare-const x Int)
(assert (> x 0))   ; trailing comment
(check-sat)
"""
SMT_RELAID = b"(set-logic QF_LIA)(declare-const x Int)\n\n  (assert\n\t(> x  0))\n(check-sat)"


def plan(content: bytes = SMT, fmt: Format = Format.SMTLIB2, **changes: object) -> Plan:
    base = Plan(Problem(content, fmt, "goal-1"), ("z3", "cvc5"), Strategy.FIRST_WINS, 2, 30.0)
    return replace(base, **changes)  # type: ignore[arg-type]


def versions(name: str) -> tuple[str, str]:
    return {"z3": ("4.8.12", "e1"), "cvc5": ("1.0.3", "e2")}[name]


def key(p: Plan) -> str:
    return cache_key(p, versions).digest


def test_comments_and_layout_do_not_change_the_key() -> None:
    assert key(plan()) == key(plan(SMT_RELAID))
    tptp = b"% header\nfof(a, axiom, p).\n/* block\n comment */ fof(c,conjecture,  p ).\n"
    assert key(plan(tptp, Format.TPTP)) == key(
        plan(b"fof(a,axiom,p).\nfof(c,conjecture,p).", Format.TPTP)
    )
    cnf = b"c pigeons\np cnf 2 2\n1 -2 0\n  2 0\nc end\n"
    assert key(plan(cnf, Format.DIMACS)) == key(plan(b"p cnf 2 2 1 -2 0 2 0", Format.DIMACS))


def test_literals_are_kept_byte_for_byte() -> None:
    a = b'(assert (= s "a  b ; not a comment"))'
    b = b'(assert (= s "a b"))'
    assert b'"a  b ; not a comment"' in normalise(a, Format.SMTLIB2)
    assert key(plan(a)) != key(plan(b))
    assert key(plan(b"(declare-const |x  y| Int)")) != key(plan(b"(declare-const |x y| Int)"))
    assert key(plan(b"fof(a,axiom,'p  q').", Format.TPTP)) != key(
        plan(b"fof(a,axiom,'p q').", Format.TPTP)
    )
    # Tokens stay apart: "x 0" is not "x0".
    assert key(plan(b"(assert (> x 0))")) != key(plan(b"(assert (> x0))"))


def test_the_deadline_and_the_goal_id_are_not_in_the_key() -> None:
    assert key(plan()) == key(plan(timeout_s=1.0))
    assert key(plan()) == key(plan(problem=Problem(SMT, Format.SMTLIB2, "another goal")))
    assert key(plan()) == key(plan(provers=("cvc5", "z3")))  # order is no option


def test_everything_that_can_change_the_answer_is_in_the_key() -> None:
    base = key(plan())
    assert key(plan(provers=("z3",))) != base
    assert key(plan(strategy=Strategy.ALL)) != base
    assert key(plan(strategy=Strategy.QUORUM)) != key(plan(strategy=Strategy.QUORUM, quorum=1))
    assert key(plan(quorum=1)) == base  # the quorum counts only under `quorum`
    assert key(plan(b"(assert (> x 1))")) != base
    newer = cache_key(plan(), lambda p: ("4.13.0", "e1") if p == "z3" else versions(p))
    assert newer.digest != base
    edited = cache_key(plan(), lambda p: ("4.8.12", "e9") if p == "z3" else versions(p))
    assert edited.digest != base
    assert cache_key(plan(), versions).provers == (("cvc5", "1.0.3"), ("z3", "4.8.12"))


def test_a_registry_entry_digest_is_stable_and_sees_every_field() -> None:
    from proofrace.backends.registry import Registry

    specs = Registry.load().specs
    assert entry_digest(specs["z3"]) == entry_digest(replace(specs["z3"]))
    assert entry_digest(specs["z3"]) != entry_digest(replace(specs["z3"], default=False))
    changed = replace(specs["z3"], command=(*specs["z3"].command, "-T:5"))
    assert entry_digest(specs["z3"]) != entry_digest(changed)


def outcome(verdict: Verdict, **changes: object) -> SolveOutcome:
    base = SolveOutcome("s1", "g", verdict, Strategy.FIRST_WINS, Format.SMTLIB2, winner="z3")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_only_uncontested_decisive_answers_are_stored() -> None:
    k = cache_key(plan(), versions)
    for verdict in (Verdict.TIMEOUT, Verdict.UNKNOWN, Verdict.CANCELLED, Verdict.ERROR):
        assert entry_for(k, outcome(verdict)) is None
    assert entry_for(k, outcome(Verdict.PROVED, disagreement=True)) is None
    failed = outcome(Verdict.REFUTED, grounds=Grounds.CERTIFICATE_FAILED)
    assert entry_for(k, failed) is None
    stored = entry_for(k, outcome(Verdict.REFUTED))
    assert stored is not None
    assert (stored.verdict, stored.grounds, stored.winner) == (
        Verdict.REFUTED,
        Grounds.UNCHECKED,
        "z3",
    )
    checked = entry_for(k, outcome(Verdict.REFUTED, grounds=Grounds.MODEL_CHECKED))
    assert checked is not None and checked.certified and not stored.certified


# --- the normaliser against a token-by-token reference ----------------------------------------

# The reference: one token at a time, a space between two tokens that layout or a comment
# separated, unless either side is a parenthesis, a bracket or a comma. Slow, plainly right.
_REFERENCE = {
    Format.SMTLIB2: re.compile(
        rb'(?P<lit>"(?:[^"]|"")*"?|\|[^|]*\|?)|(?P<gap>(?:\s+|;[^\n]*)+)|(?P<tok>[^\s"|;]+)'
    ),
    Format.TPTP: re.compile(
        rb"(?P<lit>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?)"
        rb"|(?P<gap>(?:\s+|%[^\n]*|/\*.*?(?:\*/|\Z))+)"
        rb"|(?P<tok>(?:[^\s'\"%/]|/(?!\*))+)",
        re.DOTALL,
    ),
}


def reference(content: bytes, problem_format: Format) -> bytes:
    out = bytearray()
    gap = False
    for match in _REFERENCE[problem_format].finditer(content):
        if match.lastgroup == "gap":
            gap = True
            continue
        text = match.group()
        if gap and out and out[-1] not in b"(),[]" and text[0] not in b"(),[]":
            out += b" "
        out += text
        gap = False
    return bytes(out)


_PIECES = {
    Format.SMTLIB2: [b"(", b")", b" ", b"\n", b"\t", b"x", b"12", b";c\n", b"; d", b'"s  t"',
                     b'"a""b"', b'"open', b"|q  r|", b"|", b",", b"[", b"]", b"'", b"%"],
    Format.TPTP: [b"(", b")", b" ", b"\n", b"fof", b"p", b",", b"[", b"]", b"% c\n", b"/* b */",
                  b"/*", b"*/", b"/", b"'q  r'", b"'it\\'s'", b'"d  o"', b'"', b"'", b";"],
}  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_the_normaliser_equals_the_reference(data: st.DataObject) -> None:
    problem_format = data.draw(st.sampled_from([Format.SMTLIB2, Format.TPTP]))
    pieces = data.draw(st.lists(st.sampled_from(_PIECES[problem_format]), max_size=30))
    content = b"".join(pieces)
    assert normalise(content, problem_format) == reference(content, problem_format)


def test_dimacs_drops_comment_lines_only() -> None:
    assert normalise(b"c x\n  c y\np cnf 1 1\r\n1   0\n", Format.DIMACS) == b"p cnf 1 1 1 0"
