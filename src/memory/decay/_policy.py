"""Decay's decisions as pure functions over frozen values: no database, no clock, no files.

* ``note_state``: what a note's front matter says (``zone:`` declares its zone, ``pinned: true``
  protects it) and what its state row becomes.
* ``cutoffs``: the idle-since limits of a run. "Not recalled for N days" counts from
  max(last recall, entering the zone), which the store keeps as ``idle_since``.
* ``DecayReport``: what a run did (or, dry, would do).
* ``zone_usage`` / ``health_problems``: the health section's numbers and its plain-words problems.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..store._decay import NoteChange, NoteState
from ._config import CLOUD, ZONE_NAMES, DecayConfig, zone_number

WARN_USAGE = 0.8  # a zone at or above 80 % of its configured capacity is reported
FORGETTABLE_PREFIX = "knowledge/"  # notes live here; md/ holds configs, never forgotten or demoted


def front_matter(metadata_json: str | None) -> dict[str, Any]:
    """The parsed front matter, or {} when there is none or it is not a JSON object."""
    if not metadata_json:
        return {}
    try:
        data = json.loads(metadata_json)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_pinned(meta: Mapping[str, Any]) -> bool:
    value = meta.get("pinned")
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value == 1)


def note_protected(path: str | None, metadata_json: str | None) -> bool:
    """Never forgotten nor demoted: pinned in its front matter, or not a knowledge note (md/)."""
    return not str(path or "").startswith(FORGETTABLE_PREFIX) or is_pinned(front_matter(metadata_json))


def note_state(change: NoteChange, config: DecayConfig) -> NoteState:
    """The state row a changed note gets. A declared ``zone:`` (0..4 or a zone name) applies when it
    differs from the one last applied; an unusable one is ignored (the note keeps its zone)."""
    meta = front_matter(change.metadata_json)
    declared = zone_number(meta.get("zone")) if "zone" in meta else None
    zone = declared if declared is not None else config.initial_zone("knowledge")
    return NoteState(key=change.key, zone=zone, pinned=note_protected(change.path, change.metadata_json),
                     declared_zone=declared, source_at=change.updated_at)


@dataclasses.dataclass(frozen=True)
class Cutoffs:
    decay: float  # an item idle since this time or earlier moves one zone out
    forget: float  # an item in zone 4 idle since this time or earlier is forgotten


def cutoffs(now: float, config: DecayConfig) -> Cutoffs:
    return Cutoffs(now - config.decay_s, now - config.forget_s)


def demote_zones(config: DecayConfig) -> tuple[int, ...]:
    """Zones whose items may move out, outermost first (zone 4 items are forgotten instead)."""
    return tuple(range(CLOUD - 1, config.min_zone_for_decay - 1, -1))


@dataclasses.dataclass(frozen=True)
class DecayReport:
    """One run. ``demoted``: ``(id, from, to)``; ``forgotten``: ids; ``protected``: pinned items that
    would otherwise have moved or been forgotten; ``scanned``: items under decay's care in the run;
    ``adopted``: items that got their first state row in it. ``aborted``: why it stopped early."""

    started_at: float
    dry_run: bool
    scanned: int = 0
    adopted: int = 0
    demoted: tuple[tuple[str, int, int], ...] = ()
    forgotten: tuple[str, ...] = ()
    protected: int = 0
    zones: Mapping[int, int] = dataclasses.field(default_factory=dict)  # items per zone after the run
    trash_failures: tuple[tuple[str, str], ...] = ()  # (id, why) of notes whose file did not move
    seconds: float = 0.0
    aborted: str | None = None

    def zone_changes(self) -> dict[str, int]:
        """``"from->to"`` -> count: the one audit line a run writes about zones."""
        out: dict[str, int] = {}
        for _, a, b in self.demoted:
            out[f"{a}->{b}"] = out.get(f"{a}->{b}", 0) + 1
        return out

    def summary(self) -> dict[str, Any]:
        """Counts only (what the lease row and the audit log keep)."""
        return {"started_at": self.started_at, "dry_run": self.dry_run, "scanned": self.scanned,
                "adopted": self.adopted, "demoted": len(self.demoted), "forgotten": len(self.forgotten),
                "protected": self.protected, "seconds": round(self.seconds, 3), "aborted": self.aborted,
                "trash_failures": len(self.trash_failures),
                "zones": {ZONE_NAMES[z]: n for z, n in sorted(self.zones.items())}}

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "demoted": [list(d) for d in self.demoted], "forgotten": list(self.forgotten),
                "zone_changes": self.zone_changes(), "trash_failures": [list(t) for t in self.trash_failures]}


@dataclasses.dataclass(frozen=True)
class ZoneUsage:
    zone: int
    items: int
    capacity: int | None

    @property
    def fraction(self) -> float | None:
        return None if not self.capacity else self.items / self.capacity

    @property
    def warning(self) -> bool:
        f = self.fraction
        return f is not None and f >= WARN_USAGE


def zone_usage(counts: Mapping[int, int], capacity: Mapping[int, int]) -> tuple[ZoneUsage, ...]:
    return tuple(ZoneUsage(z, int(counts.get(z, 0)), capacity.get(z)) for z in range(CLOUD + 1))


def health_problems(usage: Sequence[ZoneUsage], *, enabled: bool, scheduler_running: bool | None,
                    last_run_at: float | None, interval_s: float, now: float, pending_trash: int,
                    last_aborted: str | None, last_trash_failures: int = 0) -> tuple[str, ...]:
    """Plain-words problems for the health report (empty when all is well)."""
    out: list[str] = []
    for u in usage:
        if u.warning:
            out.append(f"zone {u.zone} ({ZONE_NAMES[u.zone]}) holds {u.items} items, {u.fraction:.0%} of its "
                       f"capacity of {u.capacity}")
    if enabled and scheduler_running is False:
        out.append("decay is enabled but its scheduler is not running in this process")
    if enabled and last_run_at is not None and now - last_run_at > 3 * interval_s:
        out.append(f"the last decay run was {(now - last_run_at) / 3600:.1f} h ago (it should run every "
                   f"{interval_s / 3600:.2g} h)")
    if pending_trash:
        out.append(f"{pending_trash} forgotten notes still wait to be moved to the trash")
    if last_trash_failures:
        out.append(f"the last decay run left the files of {last_trash_failures} forgotten notes in place (moving "
                   "them to the trash failed, or a different file had been written at their path); see its "
                   "trash_failures")
    if last_aborted:
        out.append(f"the last decay run stopped early: {last_aborted}")
    return tuple(out)
