"""Fusion of keyword and vector rankings into one scored list, and the shapes recall returns.

The formula (``fuse``), for an item with 1-based rank ``r_kw`` in the keyword list and ``r_vec``
in the vector list (a missing rank contributes 0)::

    rrf      = w_kw / (k + r_kw) + w_vec / (k + r_vec)             reciprocal-rank fusion, k = 60
    recency  = (1 - w_rec) + w_rec * 0.5 ** (age / half_life)      only for kinds in recency_kinds
    score    = rrf * recency * salience(kind, id)

Reciprocal-rank fusion uses ranks, not raw scores, so BM25 (unbounded, per-backend) and cosine
(−1..1) combine without calibration, and an item both searches found outranks one found by a
single search. Recency multiplies: ``w_rec`` is the share of the score that fades, so an old
item keeps at least ``1 - w_rec`` of its relevance (recent chatter must not bury a strong old
match); ``age`` is clamped at 0 (a clock step backwards is not a bonus). Salience is the hook
the decay module fills; the default is 1.0, and a hook that raises or returns something other
than a finite number ≥ 0 counts as 1.0 (recall never fails for it) — values are capped at
``max_salience``. Every factor is reported in ``Why``.

Everything here is pure: the same inputs give the same output, ties broken by (kind, id).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

KINDS: tuple[str, ...] = ("knowledge", "event")
Key = tuple[str, str]
Salience = Callable[[str, str], float]


@dataclasses.dataclass(frozen=True)
class FusionParams:
    """The ``recall:`` weights (see the module docstring for the formula)."""

    rrf_k: float = 60.0
    keyword_weight: float = 1.0
    vector_weight: float = 1.0
    recency_weight: float = 0.3
    half_life_s: float = 7 * 86400.0
    recency_kinds: frozenset[str] = frozenset({"event"})
    max_salience: float = 10.0

    def __post_init__(self) -> None:
        checks = (("rrf_k", self.rrf_k, 0.0, math.inf, False), ("keyword_weight", self.keyword_weight, 0.0, 1e6, True),
                  ("vector_weight", self.vector_weight, 0.0, 1e6, True),
                  ("recency_weight", self.recency_weight, 0.0, 1.0, True),
                  ("half_life_s", self.half_life_s, 0.0, math.inf, False),
                  ("max_salience", self.max_salience, 0.0, math.inf, False))
        for name, value, lo, hi, lo_ok in checks:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not (lo <= value <= hi) or (value == lo and not lo_ok):
                bound = f">= {lo}" if lo_ok else f"> {lo}"
                raise ValueError(f"recall.{name}: expected a finite number {bound} and <= {hi}, got {value!r}")
        unknown = set(self.recency_kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"recall.recency_kinds: unknown kinds {sorted(unknown)}; expected some of {list(KINDS)}")


@dataclasses.dataclass(frozen=True)
class Why:
    """Each component's contribution to a score: ``score == (keyword + vector) * recency * salience
    + graph``. ``graph`` is the recall boost by graph neighbours (0.0 when off; see
    ``memory.index._recall``): an item reached only through the graph has no other component."""

    keyword_rank: int | None
    keyword: float
    vector_rank: int | None
    vector: float
    similarity: float | None
    recency: float
    salience: float
    graph: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Fused:
    kind: str
    id: str
    score: float
    why: Why


@dataclasses.dataclass(frozen=True)
class Hit:
    """One recall result. ``title`` is set for notes; ``session_key`` and ``ts`` for events
    (``ts`` is epoch seconds); ``text`` is a snippet of at most 300 characters around the match."""

    kind: str
    id: str
    score: float
    title: str | None
    text: str
    session_key: str | None
    ts: float | None
    why: Why

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recency_factor(age_s: float, params: FusionParams) -> float:
    """``(1 - w) + w * 0.5 ** (age / half_life)``; negative ages count as 0."""
    w = params.recency_weight
    if w == 0.0:
        return 1.0
    return (1.0 - w) + w * 0.5 ** (max(0.0, age_s) / params.half_life_s)


def _salience(hook: Salience | None, kind: str, id_: str, cap: float) -> float:
    if hook is None:
        return 1.0
    try:
        value = float(hook(kind, id_))
    except Exception:  # noqa: BLE001 - the hook belongs to another module; recall must answer
        return 1.0
    if not math.isfinite(value) or value < 0.0:
        return 1.0
    return min(value, cap)


def _ranks(keys: Iterable[Key]) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for key in keys:
        key = (key[0], key[1])
        if key not in out:
            out[key] = len(out) + 1
    return out


def fuse(keyword: Sequence[Key], vector: Sequence[tuple[Key, float]], *, now: float,
         ts: Mapping[Key, float | None], params: FusionParams = FusionParams(),
         salience: Salience | None = None, limit: int | None = None) -> tuple[Fused, ...]:
    """Fuse a keyword ranking (keys, best first) and a vector ranking ((key, similarity), best
    first) into at most ``limit`` scored items, best first. ``ts`` gives each item's time (missing
    or None: no recency factor). A key repeated in one list counts at its first rank."""
    kw = _ranks(keyword)
    vec_rank: dict[Key, int] = {}
    sim: dict[Key, float] = {}
    for key, score in vector:
        key = (key[0], key[1])
        if key not in vec_rank:
            vec_rank[key] = len(vec_rank) + 1
            sim[key] = float(score)
    out: list[Fused] = []
    for key in dict.fromkeys([*kw, *vec_rank]):
        r_kw, r_vec = kw.get(key), vec_rank.get(key)
        c_kw = params.keyword_weight / (params.rrf_k + r_kw) if r_kw is not None else 0.0
        c_vec = params.vector_weight / (params.rrf_k + r_vec) if r_vec is not None else 0.0
        t = ts.get(key)
        rec = recency_factor(now - t, params) if (
            t is not None and math.isfinite(t) and key[0] in params.recency_kinds) else 1.0
        sal = _salience(salience, key[0], key[1], params.max_salience)
        why = Why(r_kw, c_kw, r_vec, c_vec, sim.get(key), rec, sal)
        out.append(Fused(key[0], key[1], (c_kw + c_vec) * rec * sal, why))
    out.sort(key=lambda f: (-f.score, f.kind, f.id))
    return tuple(out if limit is None else out[:max(0, limit)])


# -- arguments of recall() ----------------------------------------------------------------

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|wks)", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600,
           "d": 86400, "day": 86400, "days": 86400, "w": 604800, "wk": 604800, "wks": 604800}


def parse_time_bound(value: object, *, now: float) -> float | None:
    """A ``since``/``until`` value as epoch seconds (None stays None).

    Accepts a ``datetime`` (naive means UTC), a ``date`` (midnight UTC), epoch seconds (int or
    float), and strings: a span back from ``now`` (``7d``, ``12h``, ``30m``, ``45s``, ``2w``,
    ``1.5d``), ``now``, epoch seconds, or ISO 8601 (``2024-05-01``, ``2024-05-01T08:00``,
    ``…Z``/``+09:00``; naive means UTC). Anything else raises ``ValueError`` saying what is accepted.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"time bound: expected a datetime, epoch seconds or a span like '7d', got {value!r}")
    if isinstance(value, (int, float)):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"time bound: epoch seconds must be finite, got {value!r}")
        return f
    if isinstance(value, _dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
        return aware.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
    if isinstance(value, str):
        s = value.strip()
        m = _RELATIVE.fullmatch(s)
        if m:
            return now - float(m.group(1)) * _UNIT_S[m.group(2).lower()]
        if s.lower() == "now":
            return now
        try:
            f = float(s)
        except ValueError:
            pass
        else:
            if math.isfinite(f):
                return f
        try:
            return parse_time_bound(_dt.datetime.fromisoformat(s), now=now)
        except ValueError:
            pass
    raise ValueError(f"time bound: expected a datetime, epoch seconds, a span like '7d'/'12h'/'30m' or an "
                     f"ISO 8601 date, got {value!r}")


def parse_kinds(kinds: object) -> frozenset[str]:
    """Validate recall's ``kinds``: a non-empty collection of ``knowledge``/``event`` (one string is
    one kind). Raises ``ValueError`` otherwise — the one error recall lets through."""
    items: list[object] = [kinds] if isinstance(kinds, str) else list(kinds) if isinstance(
        kinds, (list, tuple, set, frozenset)) else []
    if not items:
        raise ValueError(f"kinds: expected a non-empty collection of {list(KINDS)}, got {kinds!r}")
    bad = [k for k in items if k not in KINDS]
    if bad:
        raise ValueError(f"kinds: unknown {bad!r}; expected some of {list(KINDS)}")
    return frozenset(items)  # type: ignore[arg-type]
