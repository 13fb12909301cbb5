"""Recognise a problem's format from its text when the caller says `auto`."""

from __future__ import annotations

import re

from proofrace.core.model import Format

_DIMACS_HEADER = re.compile(rb"^\s*p\s+cnf\s+\d+\s+\d+", re.MULTILINE)
_TPTP_FORMULA = re.compile(rb"^\s*(fof|cnf|tff|thf|tcf|include)\s*\(", re.MULTILINE)
_SMT_COMMAND = re.compile(
    rb"^\s*\(\s*(assert|check-sat|declare-(fun|const|sort|datatypes?)|define-|set-logic|set-option|set-info)\b",
    re.MULTILINE,
)

# Enough to see the header of every format without scanning megabytes.
_SNIFF_BYTES = 64 * 1024


def detect(content: bytes) -> Format | None:
    """The format `content` is written in, or None when it is none of ours."""
    head = content[:_SNIFF_BYTES]
    if _DIMACS_HEADER.search(head):
        return Format.DIMACS
    if _TPTP_FORMULA.search(head):
        return Format.TPTP
    if _SMT_COMMAND.search(head):
        return Format.SMTLIB2
    return None


FILE_SUFFIX = {Format.SMTLIB2: ".smt2", Format.DIMACS: ".cnf", Format.TPTP: ".p"}
