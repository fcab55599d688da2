"""Reading one config section: :class:`SectionReader` converts values, remembers the keys it
used (the rest are reported as unknown) and raises the one :class:`ConfigError` shape every
section shares: ``<file>: <section>.<key>: expected <what>, got <found> (<detail>)``.

The loader (``memory._config``) and each section's own reader (``memory.decay._config``,
``memory.index._config``, ``memory._graph_config``, ``memory._audit_config``,
``memory._config_database``) build on it, so a message reads the same whichever section it is in.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from ._errors import ConfigError

# Duration units (``recall.recency_half_life``, ``decay.interval``, ...; the spellings recall's ``since``
# accepts too).
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|wks)",
                       re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600,
           "d": 86400, "day": 86400, "days": 86400, "w": 604800, "wk": 604800, "wks": 604800}


class SectionReader:
    """Walks one section, converting values and remembering which keys were used."""

    def __init__(self, source: str, section: str, data: Any) -> None:
        self.source, self.section = source, section
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.fail("", "a mapping", data)
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()
        self.nested_unknown: list[str] = []  # unknown keys of sub-sections read through this one

    def fail(self, key: str, expected: str, found: Any, detail: str = "") -> NoReturn:
        path = f"{self.section}.{key}" if key else self.section
        why = f" ({detail})" if detail else ""
        raise ConfigError(f"{self.source}: {path}: expected {expected}, got {found!r}{why}",
                          source=self.source, key=path)

    def raw(self, key: str, default: Any) -> Any:
        self.used.add(key)
        value = self.data.get(key, default)
        return default if value is None else value

    def int(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(key, default)
        expected = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"
        if isinstance(value, bool):
            self.fail(key, expected, value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
            self.fail(key, expected, value)
        return value

    def float(self, key: str, default: float, minimum: float = 0.0, strict: bool = True) -> float:
        value = self.raw(key, default)
        expected = f"a number {'>' if strict else '>='} {minimum:g}"
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                self.fail(key, expected, value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, expected, value)
        if value < minimum or (strict and value == minimum):
            self.fail(key, expected, value)
        return float(value)

    def number(self, key: str, default: float, low: float, high: float = math.inf,
               low_open: bool = False, expected: str = "") -> float:
        """A finite number in ``[low, high]`` (``(low, high]`` if ``low_open``); numeric strings
        count (``${VAR}`` substitution yields strings)."""
        if not expected:
            if high == math.inf:
                expected = f"a number {'>' if low_open else '>='} {_num(low)}"
            else:
                expected = f"a number in {'(' if low_open else '['}{_num(low)}, {_num(high)}]"
        found = self.raw(key, default)
        if isinstance(found, bool) or not isinstance(found, (int, float, str)):
            self.fail(key, expected, found)
        try:
            value = float(found)
        except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
            self.fail(key, expected, found)
        if not math.isfinite(value) or not low <= value <= high or (low_open and value == low):
            self.fail(key, expected, found)
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        if not isinstance(value, bool):
            self.fail(key, "true or false", value)
        return value

    def str(self, key: str, default: str, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "a non-empty string", value)
        if choices and value not in choices:
            self.fail(key, "one of " + ", ".join(choices), value)
        return value

    def path(self, key: str, default: str, base: Path) -> Path:
        return resolve_path(base, self.str(key, default))

    def string_list(self, key: str, default: tuple[str, ...], expected: str) -> list[Any]:
        """A YAML list, or one comma-separated string, as a list (items unchecked)."""
        value = self.raw(key, default)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")]
        if not isinstance(value, (list, tuple)):
            self.fail(key, expected, value)
        return list(value)

    def unknown(self) -> list[str]:
        return [f"{self.section}.{k}" for k in self.data if k not in self.used] + self.nested_unknown


def _num(x: float) -> str:
    """A bound as a reader would write it: 1000000, not 1e+06."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def resolve_path(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p).resolve()


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``3600``, ``45s``, ``30m``, ``12h``, ``7d``, ``2w``
    (``1.5d`` too). Raises ``ValueError`` for anything else, or a result that is not finite and > 0."""
    if isinstance(value, bool):
        raise ValueError("a duration is not true/false")
    if not isinstance(value, (int, float, str)):
        raise ValueError(f"not a duration: {type(value).__name__}")
    m = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    try:
        seconds = float(m.group(1)) * _UNIT_S[m.group(2).lower()] if m else float(value)
    except OverflowError:  # an integer too large for a float
        raise ValueError("duration too large") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be finite and > 0, got {seconds!r} seconds")
    return seconds
