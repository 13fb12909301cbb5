"""Reading what a problem needs, normalising spellings the standards make equal, and racing a
prover only on what it reads."""

from __future__ import annotations

import pytest

from proofrace.core.features import handles, read
from proofrace.core.model import (
    ErrorKind,
    Format,
    ProverInfo,
    SolveError,
    SolveRequest,
)
from proofrace.race.plan import Plan, RaceLimits, plan


def needs(text: str, fmt: Format = Format.TPTP) -> frozenset[str]:
    return read(text.encode(), fmt).needs


def test_tptp_languages_and_features() -> None:
    assert needs("fof(a, axiom, p(c)).\ncnf(b, axiom, q(X)).") == {"fof", "cnf"}
    assert needs("tff(c, conjecture, $less(2, 3)).") == {"tff", "arithmetic", "numbers"}
    assert needs('fof(a, axiom, p("apple")).') == {"fof", "distinct"}
    assert needs("fof(a, axiom, p('A b')).") == {"fof", "quoted"}
    assert needs("fof(a, axiom, 1.6 = 1).") == {"fof", "numbers"}
    assert needs("thf(a, axiom, p @ c).") == {"thf"}
    assert {"include", "fof"} <= needs("include('Axioms/SET001-0.ax').\nfof(a, axiom, p).")


def test_what_is_not_in_a_formula_is_no_feature() -> None:
    text = "% 'Quoted', \"distinct\", 1.6 and $sum in a comment\ncnf(12, axiom, p(a)).\n"
    assert needs(text) == {"cnf"}
    assert needs("fof('a name 12', axiom, p(c)).") == {"fof"}  # a formula's name
    assert needs("fof(a, axiom, p('holds(266, 0)')).") == {"fof", "quoted"}  # no number
    assert needs('fof(a, axiom, p("1.6")).') == {"fof", "distinct"}


def test_a_quoted_lower_word_is_that_word() -> None:
    reading = read(b"fof(a, axiom, p('c')).\nfof(b, axiom, p('C') | p('c d')).", Format.TPTP)
    assert reading.content == b"fof(a, axiom, p(c)).\nfof(b, axiom, p('C') | p('c d'))."


def test_smtlib_logic_and_declare_const() -> None:
    text = (
        b"(set-logic QF_BV) ; (declare-const a Int)\n(declare-const b (_ BitVec 8))\n"
        b'(assert (= "(declare-const c Int)" "x"))'
    )
    reading = read(text, Format.SMTLIB2)
    assert reading.needs == {"logic:QF_BV"}
    assert reading.content == (
        b"(set-logic QF_BV) ; (declare-const a Int)\n(declare-fun b () (_ BitVec 8))\n"
        b'(assert (= "(declare-const c Int)" "x"))'
    )
    assert read(b"(assert true)", Format.SMTLIB2).needs == {"logic:none"}


def test_dimacs_is_one_clause_per_line_and_ends_at_satlibs_percent() -> None:
    assert read(b"p cnf 2 2\n1 2 0\n-1 0\n", Format.DIMACS).content == b"p cnf 2 2\n1 2 0\n-1 0\n"
    spread = read(b"p cnf 2 3\n1 2\n 0 -1 0 2\n-2 0\n%\n0\n", Format.DIMACS).content
    assert spread == b"p cnf 2 3\n1 2 0\n-1 0\n2 -2 0\n"
    assert read(b"p cnf 1 1\n1 0\n%\n0\n", Format.DIMACS).content == b"p cnf 1 1\n1 0\n"


def test_handles() -> None:
    assert handles(None, frozenset({"thf"}))
    assert handles(frozenset({"fof", "cnf"}), frozenset({"fof"}))
    assert not handles(frozenset({"fof", "cnf"}), frozenset({"fof", "numbers"}))


CATALOG = [
    ProverInfo("eprover", "2.6", (Format.TPTP,), True, handles=frozenset({"fof", "tff"})),
    ProverInfo("spass", "3.9", (Format.TPTP,), True, handles=frozenset({"fof"})),
    ProverInfo("cvc5-tptp", "1.0", (Format.TPTP,), True, engine="cvc5"),
    ProverInfo("boolector", "1.5", (Format.SMTLIB2,), True, handles=frozenset({"logic:QF_BV"})),
    ProverInfo("z3", "4.8", (Format.SMTLIB2,), True),
    ProverInfo("cvc4", "1.8", (Format.SMTLIB2,), True, default=False),
]


def planned(content: str, provers: tuple[str, ...] = ()) -> Plan | SolveError:
    return plan(SolveRequest(content.encode(), provers=provers), CATALOG, RaceLimits())


def test_a_prover_is_raced_only_on_what_it_reads() -> None:
    chosen = planned("fof(a, axiom, 1 = 2).")
    assert isinstance(chosen, Plan) and chosen.provers == ("cvc5-tptp",)
    chosen = planned("fof(a, axiom, p(c)).")
    assert isinstance(chosen, Plan) and chosen.provers == ("eprover", "spass", "cvc5-tptp")
    chosen = planned("(set-logic QF_BV)(declare-const a (_ BitVec 8))(check-sat)")
    assert isinstance(chosen, Plan) and chosen.provers == ("boolector", "z3")
    chosen = planned("(set-logic QF_LIA)(declare-const a Int)(check-sat)")
    assert isinstance(chosen, Plan) and chosen.provers == ("z3",)
    assert isinstance(chosen, Plan) and chosen.engines == {"z3": "z3"}


def test_confirm_races_every_prover_that_reads_the_problem() -> None:
    request = SolveRequest(b"(set-logic QF_LIA)(check-sat)", confirm=True)
    chosen = plan(request, CATALOG, RaceLimits())
    assert isinstance(chosen, Plan) and chosen.provers == ("z3", "cvc4")
    assert chosen.confirm


def test_named_provers_that_cannot_read_it_are_left_out_or_refused() -> None:
    chosen = planned("tff(c, conjecture, $less(2,3)).", ("eprover", "cvc5-tptp"))
    assert isinstance(chosen, Plan) and chosen.provers == ("cvc5-tptp",)
    refused = planned("tff(c, conjecture, $less(2,3)).", ("eprover", "spass"))
    assert isinstance(refused, SolveError) and refused.kind is ErrorKind.UNSUPPORTED_FORMAT
    assert "arithmetic" in refused.message


@pytest.mark.parametrize("text", ["include('Axioms/GRP001-0.ax').\ncnf(a, axiom, p)."])
def test_includes_cannot_be_resolved(text: str) -> None:
    refused = planned(text)
    assert isinstance(refused, SolveError) and refused.kind is ErrorKind.INVALID_INPUT


def test_the_problem_raced_is_the_normalised_one() -> None:
    chosen = planned("fof(a, axiom, p('c')).\nfof(b, axiom, ~ p(c)).")
    assert isinstance(chosen, Plan)
    assert chosen.problem.content == b"fof(a, axiom, p(c)).\nfof(b, axiom, ~ p(c))."
