"""What changed in the vault: a pure function from a snapshot and the last known state to a plan.

No I/O happens here; the scanner builds the snapshot, :mod:`._vault` applies the plan. The tests
call :func:`plan` directly with hand-made snapshots.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class FileState:
    """A file as the scanner saw it. ``digest`` is None when it could not be read (``error``).

    ``racy``: the file was hashed so soon after its last modification that a later change in
    the same timestamp tick would keep (mtime, size); its digest must not be trusted through
    the shortcut next time (see :func:`memory.vault._scan.is_racy`).
    """

    path: str
    mtime_ns: int
    size: int
    digest: str | None
    error: str | None = None
    racy: bool = False


@dataclasses.dataclass(frozen=True)
class Known:
    """A file as the last sync left it (from metadata.json)."""

    digest: str
    mtime_ns: int
    size: int
    synced: bool = True


@dataclasses.dataclass(frozen=True)
class Plan:
    new: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    moved: tuple[tuple[str, str], ...] = ()  # (old path, new path)
    deleted: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    invalid: tuple[tuple[str, str], ...] = ()  # (path, why): present but unreadable / skipped

    @property
    def changes(self) -> int:
        return len(self.new) + len(self.modified) + len(self.moved) + len(self.deleted)


def plan(current: Mapping[str, FileState], known: Mapping[str, Known]) -> Plan:
    """Classify every path.

    * unreadable or skipped files are *present*: never deleted, never re-synced (a read error
      must not delete rows);
    * same path, same digest and synced → unchanged; otherwise → modified;
    * a new path whose digest equals that of a vanished path is a move (paired one to one,
      same file name first), not a delete plus a create;
    * vanished paths left over → deleted.
    """
    new, modified, unchanged, invalid = [], [], [], []
    for path, st in current.items():
        if st.digest is None:
            invalid.append((path, st.error or "unreadable"))
            continue
        k = known.get(path)
        if k is None:
            new.append(path)
        elif k.digest == st.digest and k.synced:
            unchanged.append(path)
        else:
            modified.append(path)
    vanished = [p for p in known if p not in current]
    by_digest: dict[str, list[str]] = {}
    for p in vanished:
        by_digest.setdefault(known[p].digest, []).append(p)
    moved: list[tuple[str, str]] = []
    unpaired = sorted(new)
    # Two passes so a same-named file is never taken by another one first.
    for same_name_only in (True, False):
        rest = []
        for path in unpaired:
            candidates = by_digest.get(current[path].digest or "", [])
            if same_name_only:
                candidates = [c for c in candidates if posixpath.basename(c) == posixpath.basename(path)]
            if not candidates:
                rest.append(path)
                continue
            old = candidates[0]
            by_digest[current[path].digest or ""].remove(old)
            moved.append((old, path))
        unpaired = rest
    still_new = unpaired
    moved_from = {old for old, _ in moved}
    deleted = [p for p in vanished if p not in moved_from]
    return Plan(new=tuple(sorted(still_new)), modified=tuple(sorted(modified)), moved=tuple(sorted(moved)),
                deleted=tuple(sorted(deleted)), unchanged=tuple(sorted(unchanged)), invalid=tuple(sorted(invalid)))
