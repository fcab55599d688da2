"""What text an event contributes to the index, and the snippet a hit shows.

Event text (``event_text``): the stored observation is JSON text; configurable field paths are
tried in order and the first one holding text wins. The default is the first of ``text``,
``content``, ``message``, ``body``; a dotted path such as ``payload.text`` walks into nested
objects, and a numeric part indexes a list (``parts.0.text``). A field "holds text" when it is
a non-blank string; a list contributes its strings and the ``text`` of its objects (the
chat-message "content parts" shape); an object contributes its own ``text`` or ``content``
string. Numbers, booleans and blank strings hold no text. Invalid JSON, a non-object, or no
path with text → ``None``: such an event is not indexed. Never raises.

Snippets (``snippet``): at most ``width`` (300) characters of the original text around the
densest cluster of query matches (most distinct query words, then most matches), whitespace
collapsed, ``…`` marking a cut. Matching is case-insensitive on the original text, with CJK
runs matched by their bigrams so ``커피를`` in a query finds ``커피`` in the text. Without a match
the snippet is the text's beginning. Never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ._text import KeywordQuery, is_run, keyword_query

DEFAULT_TEXT_FIELDS: tuple[str, ...] = ("text", "content", "message", "body")
SNIPPET_WIDTH = 300
#: How far into a long text a snippet looks for matches (a hit's text may be a whole note).
SNIPPET_SCAN_CHARS = 100_000
_MAX_MATCHES = 2_000
_MAX_PATTERNS = 64
_PATH_PART = re.compile(r"[^.\s]+")
_WS = re.compile(r"\s+")

FieldPath = tuple[str, ...]


def parse_field_paths(spec: str | Iterable[str]) -> tuple[FieldPath, ...]:
    """Validate the ``recall.event_text_fields`` setting: a list of dotted paths (or one string,
    comma separated). Raises ``ValueError`` naming the bad entry; never returns an empty tuple."""
    items = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[FieldPath] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"event text field path must be a non-empty string, got {item!r}")
        parts = tuple(item.strip().split("."))
        if any(_PATH_PART.fullmatch(p) is None for p in parts):
            raise ValueError(f"invalid event text field path {item!r}: expected names joined by '.'")
        out.append(parts)
    if not out:
        raise ValueError("event text field paths: at least one path is required")
    return tuple(dict.fromkeys(out))


DEFAULT_FIELD_PATHS: tuple[FieldPath, ...] = parse_field_paths(DEFAULT_TEXT_FIELDS)


def _walk(node: Any, path: FieldPath) -> Any:
    for part in path:
        if isinstance(node, dict):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            idx = int(part)
            if idx >= len(node):
                return None
            node = node[idx]
        else:
            return None
    return node


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list):
        pieces = []
        for item in value:
            if isinstance(item, dict):
                item = item.get("text")
            if isinstance(item, str) and item.strip():
                pieces.append(item)
        return "\n".join(pieces) if pieces else None
    if isinstance(value, dict):
        for key in ("text", "content"):
            inner = value.get(key)
            if isinstance(inner, str) and inner.strip():
                return inner
    return None


def event_text(obs_json: str | bytes | None, paths: tuple[FieldPath, ...] = DEFAULT_FIELD_PATHS) -> str | None:
    """The indexable text of a stored observation (JSON text), or None. Never raises.

    A bare JSON string (an observation that was itself a string) is its own text.
    """
    if obs_json is None:
        return None
    try:
        data = json.loads(obs_json)
    except (ValueError, TypeError, RecursionError):
        return None
    if isinstance(data, str):
        return data if data.strip() else None
    if not isinstance(data, (dict, list)):
        return None
    for path in paths:
        text = _as_text(_walk(data, path))
        if text is not None:
            return text
    return None


def _patterns(query: KeywordQuery) -> list[str]:
    """Surface strings to look for: words as they are, CJK runs as their bigrams."""
    out: dict[str, None] = {}
    for surf in query.surfaces:
        surf = surf[:100]
        if len(surf) > 2 and is_run(surf):
            for a, b in zip(surf, surf[1:]):
                out[a + b] = None
        else:
            out[surf] = None
    return list(out)[:_MAX_PATTERNS]


def _best_window(matches: list[tuple[int, int, int]], width: int) -> tuple[int, int]:
    """(start, end) of the span of matches inside ``width`` with the most distinct patterns,
    then the most matches; ``matches`` are (start, end, pattern index) sorted by start."""
    best = (-1, -1, 0, 0)
    counts: dict[int, int] = {}
    lo = 0
    for hi, (_start, e, pid) in enumerate(matches):
        counts[pid] = counts.get(pid, 0) + 1
        while e - matches[lo][0] > width:
            old = matches[lo][2]
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
            lo += 1
        key = (len(counts), hi - lo + 1)
        if key > best[:2]:
            best = (key[0], key[1], matches[lo][0], e)
    return best[2], best[3]


def _cut(text: str, start: int, end: int, width: int) -> str:
    """``text[start:end]`` widened to ``width`` around it, cut at spaces when that is close."""
    budget = width - 2  # room for two ellipses
    extra = max(0, budget - (end - start))
    lo = max(0, start - extra // 2)
    hi = min(len(text), lo + budget)
    lo = max(0, min(lo, hi - budget))
    if lo > 0:
        space = text.find(" ", lo, min(start, lo + 30))
        if space != -1:
            lo = space + 1
    if hi < len(text):
        space = text.rfind(" ", max(end, hi - 30), hi)
        if space != -1:
            hi = space
    body = _WS.sub(" ", text[lo:hi]).strip()
    return ("…" if lo > 0 else "") + body + ("…" if hi < len(text) else "")


def snippet(text: str | None, query: KeywordQuery | str | None, width: int = SNIPPET_WIDTH) -> str:
    """Up to ``width`` characters of ``text`` around the best match of ``query``. Never raises."""
    if not text:
        return ""
    width = max(width, 10)
    try:
        kq = query if isinstance(query, KeywordQuery) or query is None else keyword_query(query)
        area = text[:SNIPPET_SCAN_CHARS]
        start = end = 0
        if kq is not None:
            pats = _patterns(kq)
            rx = re.compile("|".join(f"({re.escape(p)})" for p in pats), re.IGNORECASE) if pats else None
            matches: list[tuple[int, int, int]] = []
            if rx is not None:
                for m in rx.finditer(area):
                    matches.append((m.start(), m.end(), (m.lastindex or 1) - 1))
                    if len(matches) >= _MAX_MATCHES:
                        break
            if matches:
                start, end = _best_window(matches, width - 2)
        out = _cut(text, start, end, width)
    except Exception:  # noqa: BLE001 - a snippet is decoration; never fail a recall for it
        out = _WS.sub(" ", text[: width - 1]).strip() + ("…" if len(text) >= width else "")
    if len(out) > width:  # whitespace collapsing only shrinks, but keep the promise explicit
        out = out[: width - 1] + "…"
    return out
