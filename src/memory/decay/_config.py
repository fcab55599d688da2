"""The ``decay:`` config section → :class:`DecayConfig` (frozen), or one :class:`~memory.ConfigError`
naming file, key, expectation and finding.

Defaults (every key optional)::

    decay:
      enabled: false           # opt-in (decay forgets data); forget and restore work either way
      interval: 1h             # how often the scheduler runs decay (seconds, or 30m, 12h, 1d, ...)
      decay_days: 30           # idle this long (no recall, not newly in its zone) -> one zone out
      auto_forget_days: 180    # idle this long in zone 4 (cloud) -> forgotten (tombstoned, file to trash)
      min_zone_for_decay: 2    # zones below it (0 core, 1 inner) never move out
      initial_zone: {note: 1, event: 3}   # a new item's zone; a note's front matter `zone:` wins
      capacity: {}             # optional items per zone, e.g. {core: 200, 1: 2000}; health warns at 80 %
      batch_size: 1000         # rows per statement batch (and per transaction) of a run
      trash_dir: .trash        # below the vault root; forgotten notes go to <trash_dir>/<date>/<path>
      lease_ttl: 10m           # a runner that stops renewing is taken over after this long

Zones are 0 core, 1 inner, 2 middle, 3 outer, 4 cloud (names accepted wherever a zone number is).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from .._config import _Reader, parse_duration
from ..store._recall import KIND_EVENT, KIND_NOTE

ZONE_NAMES = ("core", "inner", "middle", "outer", "cloud")
CLOUD = len(ZONE_NAMES) - 1
DAY_S = 86400.0
#: The config's spelling of a kind -> recall's kind (what the tables hold).
KIND_ALIASES = {"note": KIND_NOTE, "notes": KIND_NOTE, "knowledge": KIND_NOTE, "event": KIND_EVENT,
                "events": KIND_EVENT}
_SAFE_DIR = re.compile(r"\.[A-Za-z0-9_.-]+")


@dataclasses.dataclass(frozen=True)
class DecayConfig:
    """The decay plug-in's settings (see the module docstring for each key). Off by default, as in
    the config file: decay forgets data, so whoever builds one turns it on (``enabled=True``)."""

    enabled: bool = False
    interval_s: float = 3600.0
    decay_days: float = 30.0
    auto_forget_days: float = 180.0
    min_zone_for_decay: int = 2
    initial_zones: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: {KIND_NOTE: 1, KIND_EVENT: 3})
    capacity: Mapping[int, int] = dataclasses.field(default_factory=dict)
    batch_size: int = 1000
    trash_dir: str = ".trash"
    lease_ttl_s: float = 600.0

    @property
    def decay_s(self) -> float:
        return self.decay_days * DAY_S

    @property
    def forget_s(self) -> float:
        return self.auto_forget_days * DAY_S

    def initial_zone(self, kind: str) -> int:
        return int(self.initial_zones.get(kind, 2))


def zone_number(value: Any) -> int | None:
    """0..4 from a number or a zone name; None if it is neither (booleans are not zones)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ZONE_NAMES:
            return ZONE_NAMES.index(v)
        if re.fullmatch(r"\d+", v):
            value = int(v)
        else:
            return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= CLOUD:
        return value
    return None


def _duration(r: _Reader, key: str, default: float) -> float:
    found = r.raw(key, default)
    try:
        return parse_duration(found)
    except ValueError:
        r.fail(key, "a duration > 0: seconds, or a number followed by s, m, h, d or w (e.g. 1h, 30m)", found)


def _initial(r: _Reader) -> dict[str, int]:
    zones = {KIND_NOTE: 1, KIND_EVENT: 3}
    found = r.raw("initial_zone", {})
    expected = "a mapping of kind (note, event) to zone (0..4 or core, inner, middle, outer, cloud)"
    if not isinstance(found, Mapping):
        r.fail("initial_zone", expected, found)
    for name, value in found.items():
        kind = KIND_ALIASES.get(str(name).strip().lower())
        zone = zone_number(value)
        if kind is None or zone is None:
            r.fail(f"initial_zone.{name}", expected, value)
        zones[kind] = zone
    return zones


def _capacity(r: _Reader) -> dict[int, int]:
    found = r.raw("capacity", {})
    expected = "a mapping of zone (0..4 or its name) to a number of items >= 1"
    if not isinstance(found, Mapping):
        r.fail("capacity", expected, found)
    out: dict[int, int] = {}
    for name, value in found.items():
        zone = zone_number(name)
        ok = not isinstance(value, bool) and isinstance(value, (int, str)) and re.fullmatch(r"\s*\d+\s*", str(value))
        if zone is None or not ok or int(value) < 1:
            r.fail(f"capacity.{name}", expected, value)
        out[zone] = int(value)
    return out


def read_decay_config(section: Any, *, source: str = "<mapping>") -> DecayConfig:
    """Validate the ``decay:`` section (``Config.decay``, a mapping or None) into a DecayConfig.

    Raises :class:`~memory.ConfigError` naming ``source``, the key (``decay.<key>``), what was
    expected and what was found. Unknown keys are ignored (the service's loader warns about
    sections it validates itself; this one is validated here). A DecayConfig is returned as is.
    """
    if isinstance(section, DecayConfig):
        return section
    r = _Reader(source, "decay", section)
    # Off unless the section says so: decay runs a scheduler that takes the database's write lock
    # and, after auto_forget_days, forgets (reversibly) — an operator's decision, not an upgrade's.
    enabled = r.bool("enabled", False)
    interval = _duration(r, "interval", 3600.0)
    decay_days = r.number("decay_days", 30.0, 0.0, 36500.0, low_open=True)
    forget_days = r.number("auto_forget_days", 180.0, 0.0, 36500.0, low_open=True)
    min_zone_raw = r.raw("min_zone_for_decay", 2)
    min_zone = zone_number(min_zone_raw)
    if min_zone is None:
        r.fail("min_zone_for_decay", "a zone 0..4 (or core, inner, middle, outer, cloud)", min_zone_raw)
    initial = _initial(r)
    capacity = _capacity(r)
    batch = r.int("batch_size", 1000, 1, 100_000)
    trash = r.str("trash_dir", ".trash")
    if not _SAFE_DIR.fullmatch(trash) or trash in (".", ".."):
        # Hidden, one level, below the vault root: the vault's scanner skips hidden folders, so
        # trashed notes are never synced back; anything else could land them among live notes.
        r.fail("trash_dir", "a hidden folder name directly below the vault (like .trash)", trash)
    ttl = _duration(r, "lease_ttl", 600.0)
    if not math.isfinite(ttl) or ttl < 1.0:
        r.fail("lease_ttl", "a duration of at least 1 s", r.data.get("lease_ttl"))
    return DecayConfig(enabled=enabled, interval_s=interval, decay_days=decay_days, auto_forget_days=forget_days,
                       min_zone_for_decay=min_zone, initial_zones=initial, capacity=capacity, batch_size=batch,
                       trash_dir=trash, lease_ttl_s=ttl)


def unknown_keys(section: Any) -> list[str]:
    """Keys of the section this reader does not know (for a warning by the caller)."""
    known = {"enabled", "interval", "decay_days", "auto_forget_days", "min_zone_for_decay", "initial_zone", "capacity",
             "batch_size", "trash_dir", "lease_ttl"}
    return [f"decay.{k}" for k in section if k not in known] if isinstance(section, Mapping) else []
