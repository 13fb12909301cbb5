"""Problem text reduced to what the provers read: comments and layout removed, literals kept.

Two requests whose problems differ only in comments, blank lines or indentation ask the same
question, so they share a cache key. Nothing inside a string literal or a quoted symbol is
touched, and no token is reordered or renamed: normalising never merges two different problems.

The text is cut at literals and comments only (rare), and everything between is handled by
regular expressions at C speed: a megabyte takes milliseconds. Problems larger than
`MAX_NORMALISED_BYTES` are keyed on their exact bytes.
"""

from __future__ import annotations

import re

from proofrace.core.model import Format

MAX_NORMALISED_BYTES = 4 << 20

# Literals (kept byte for byte; an unterminated one runs to the end) and comments.
_SMTLIB = re.compile(rb'("(?:[^"]|"")*"?|\|[^|]*\|?|;[^\n]*)')
_TPTP = re.compile(
    rb"('(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|%[^\n]*|/\*.*?(?:\*/|\Z))", re.DOTALL
)
_COMMENT = {Format.SMTLIB2: (b";",), Format.TPTP: (b"%", b"/*")}
_SPACES = bytes.maketrans(b"\t\n\r\x0b\x0c", b"     ")
_RUN = re.compile(b"  +")
# No space is needed next to these to keep two tokens apart.
_TIGHT = (b"(", b")", b",", b"[", b"]")
_DIMACS_COMMENT = re.compile(rb"(?m)^[ \t]*c.*$")


def normalise(content: bytes, problem_format: Format) -> bytes:
    if len(content) > MAX_NORMALISED_BYTES:
        return content
    if problem_format is Format.DIMACS:
        return _RUN.sub(b" ", _DIMACS_COMMENT.sub(b"", content).translate(_SPACES)).strip()
    if problem_format is Format.SMTLIB2:
        return _normalise(_SMTLIB, _COMMENT[Format.SMTLIB2], content)
    if problem_format is Format.TPTP:
        return _normalise(_TPTP, _COMMENT[Format.TPTP], content)
    return content


def _normalise(pattern: re.Pattern[bytes], comments: tuple[bytes, ...], content: bytes) -> bytes:
    parts = pattern.split(content)  # text, literal or comment, text, ...
    out: list[bytes] = []
    layout: list[bytes] = []  # text and comments since the last literal
    for i, part in enumerate(parts):
        if i % 2 == 0 or part.startswith(comments):
            layout.append(part if i % 2 == 0 else b" ")
        else:
            between = _layout(b"".join(layout))
            out += (between.lstrip() if not out else between, part)
            layout = []
    last = _layout(b"".join(layout)).rstrip()
    out.append(last.lstrip() if not out else last)
    return b"".join(out)


def _layout(text: bytes) -> bytes:
    """Each run of layout as one space (kept at the ends, where a literal may follow), and no
    space beside a parenthesis or a comma."""
    spaced = _RUN.sub(b" ", text.translate(_SPACES))
    for tight in _TIGHT:
        spaced = spaced.replace(b" " + tight, tight).replace(tight + b" ", tight)
    return spaced
