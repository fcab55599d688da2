"""Keyword search, decided once: the same matching and ranking for the database and the files.

A note matches when every query word (lowercased with Python's ``str.lower``) is a substring
of its lowercased title, tags or body; it scores ``5×`` per title occurrence, ``3×`` per tag
occurrence and ``1×`` per body occurrence; ties go to the smaller key. Only the top ``limit``
notes are returned.

The database is only a **pre-filter**: :func:`like_patterns` turns each word into ``LIKE``
patterns that every true match satisfies on both dialects, and the exact test and the ranking
run here, in Python, on every candidate — so the database path returns what the file path
returns, in the same order, for any query. Ranking inside SQL (or cutting the candidates with
``LIMIT`` first) cannot do that: SQLite's ``LOWER`` and ``LIKE`` fold ASCII only, MySQL's
collation folds accents as well, and neither lowercases like Python.

Why the patterns never miss a match (``tests/test_vault_search.py`` checks the facts below
over every code point):

* ``LIKE`` on both dialects matches ASCII letters case-insensitively and any character equal
  to itself; ``_`` is one character, ``%`` any run. MySQL's ``utf8mb4_unicode_ci`` folds
  more (accents), which only adds candidates.
* Python's ``lower`` maps every character to one character, except ``İ`` (U+0130) →
  ``i`` + U+0307. The only non-ASCII characters that lower to ASCII are ``İ`` (→ ``i``) and
  the Kelvin sign (→ ``k``). So in a word, ``i`` and ``k`` become ``_``, U+0307 becomes
  ``%``, and a cased non-ASCII letter (``é``, ``ß``, ``σ``) becomes ``_`` (its source may be
  any case variant, one character long); caseless characters (CJK, digits, emoji) and other
  ASCII stay literal, with ``%``, ``_`` and the escape character escaped.
* Tags are stored as JSON, where non-ASCII may be written ``\\uXXXX`` and ``"`` / ``\\`` are
  escaped: in the tags pattern every character that is not printable ASCII (and ``"``,
  ``\\``, ``i``, ``k``) becomes ``%``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

ESCAPE = "!"
MAX_PATTERN_WORD = 500  # longer words are matched in Python only (SQLite caps LIKE patterns)
_COMBINING_DOT = "\u0307"
T = TypeVar("T")


def words_of(query: str) -> list[str]:
    return [w for w in str(query).lower().split() if w]


def score(title: str, body: str, tags: str, words: Sequence[str]) -> int:
    """0 if some word is missing; else the weighted count of occurrences. Inputs: lowercased."""
    if not all(w in title or w in body or w in tags for w in words):
        return 0
    return sum(5 * title.count(w) + 3 * tags.count(w) + body.count(w) for w in words)


def score_note(title: str, body: str, tags: Iterable[str], words: Sequence[str]) -> int:
    return score(title.lower(), body.lower(), " ".join(tags).lower(), words)


def rank(scored: Iterable[tuple[int, str, T]], limit: int) -> list[T]:
    """Items with a positive score, best first, ties by key; at most ``limit``."""
    ranked = sorted((s for s in scored if s[0] > 0), key=lambda t: (-t[0], t[1]))
    return [item for _, _, item in ranked][: max(0, limit)]


def _escaped(c: str) -> str:
    return ESCAPE + c if c in ("%", "_", ESCAPE) else c


def _joined(parts: list[str]) -> str:
    """``%`` + parts + ``%``, with runs of ``%`` collapsed (same meaning, less work for LIKE)."""
    out = ["%"]
    for p in [*parts, "%"]:
        if p != "%" or out[-1] != "%":
            out.append(p)
    return "".join(out)


def text_pattern(word: str) -> str:
    out = []
    for c in word:
        if c in ("i", "k"):
            out.append("_")  # may stand for İ or the Kelvin sign in the text
        elif c < "\x80":
            out.append(_escaped(c))
        elif c == _COMBINING_DOT:
            out.append("%")  # the second half of İ lowered
        elif c.upper() == c:
            out.append(c)  # caseless: only itself lowers to it
        else:
            out.append("_")
    return _joined(out)


def tags_pattern(word: str) -> str:
    return _joined([_escaped(c) if " " <= c < "\x7f" and c not in ('"', "\\", "i", "k") else "%" for c in word])


def like_patterns(words: Sequence[str]) -> list[tuple[str, str]]:
    """(text pattern, tags pattern) per word; words too long for a LIKE pattern are left to Python."""
    return [(text_pattern(w), tags_pattern(w)) for w in words if len(w) <= MAX_PATTERN_WORD]
