"""Decay's storage: zones per item, touches from recall, tombstones, and the runner's lease.

A mixin of :class:`~memory.store.SqlStore` (tables ``item_state``, ``tombstones``, ``decay_lease``,
migration 0005). Items are recall's: ``("event", event_id)`` and ``("knowledge", key)``. The
decisions (which zone a note declares, what a run reports) are ``memory.decay``'s; this module
only moves rows, set-based and in batches. The guarantees the plug-in builds on:

* **Nothing on the append path.** ``adopt_events`` / ``note_changes`` + ``upsert_note_states``
  give committed items their state rows from the decay run, in keyset pages (``events`` and
  ``knowledge`` are walked by primary key, anti-joined with ``item_state``).
* **A scan is an index range.** ``ix_item_state_decay (pinned, zone, idle_since)``: the demote and
  forget candidates of a zone are ``pinned = 0 AND zone = z AND idle_since <= cut``, oldest first
  in index order (no sort), each batch continuing after the last on MariaDB (see ``idle_items``).
  ``idle_since`` is kept equal to max(``zone_since``, ``last_recalled_at``) by every write here.
* **One zone per run.** A demotion sets ``zone_since`` (and ``idle_since``) to the run's ``now``,
  so the item is not idle again before another full period.
* **Exact reports under concurrency.** Candidates are read with ``FOR UPDATE`` on MariaDB (SQLite's
  write transaction is exclusive), so the rows updated are the rows reported.
* **Touches are replay-safe.** ``apply_touches`` applies an item's touches only if their newest
  time is later than the stored ``last_recalled_at``: a journal replaying a batch changes nothing.
* **A tombstone keeps what restore needs**: the deleted row as JSON and the content digest
  (SHA-256 of an event's ``obs``; a note's file digest). ``drop_tombstoned`` lets a writer drop
  forgotten ids from a batch inside its own transaction, so a replay or an import cannot bring an
  item back until it is restored.
* **One runner.** ``take_lease`` is one UPDATE that succeeds only if the lease expired (or is
  already the caller's) and no run finished within ``min_interval``; ``rowcount`` names the winner
  (MariaDB's FOUND_ROWS flag makes it the rows matched, as SQLite's is).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._recall import KIND_EVENT, KIND_NOTE, chunks

CLOUD = 4  # the outermost zone; items idle there are forgotten
KINDS = (KIND_EVENT, KIND_NOTE)
_NOTE_COLS = ("key", "category", "path", "title", "content", "tags", "headings", "links", "metadata_json", "digest",
              "mtime_ns", "updated_at")
_EVENT_COLS = ("event_id", "ts", "session_key", "obs", "gate", "meta")
_STATE_COLS = ("kind, item_id, zone, zone_since, idle_since, recall_count, last_recalled_at, pinned, declared_zone, "
               "source_at")


@dataclasses.dataclass(frozen=True)
class DecayStatements:
    """What differs between dialects."""

    lock: str  # appended to a candidate read
    greatest: str
    least: str
    upsert: str  # "ON CONFLICT(kind, item_id) DO UPDATE SET" / "ON DUPLICATE KEY UPDATE"
    nothing: str  # insert-or-keep: "ON CONFLICT DO NOTHING" / "ON DUPLICATE KEY UPDATE <pk>=<pk>"
    excluded: str  # "excluded.{c}" / "VALUES({c})"


SQLITE = DecayStatements(lock="", greatest="MAX", least="MIN", upsert="ON CONFLICT(kind, item_id) DO UPDATE SET",
                         nothing="ON CONFLICT DO NOTHING", excluded="excluded.{c}")
MYSQL = DecayStatements(lock=" FOR UPDATE", greatest="GREATEST", least="LEAST", upsert="ON DUPLICATE KEY UPDATE",
                        nothing="ON DUPLICATE KEY UPDATE {pk} = {pk}", excluded="VALUES({c})")


@dataclasses.dataclass(frozen=True)
class ItemStateRow:
    kind: str
    item_id: str
    zone: int
    zone_since: float
    idle_since: float
    recall_count: int
    last_recalled_at: float | None
    pinned: bool
    declared_zone: int | None
    source_at: float | None


@dataclasses.dataclass(frozen=True)
class NoteChange:
    """A note whose state row is missing or older than the note (front matter to read)."""

    key: str
    path: str
    metadata_json: str | None
    updated_at: float
    has_state: bool
    declared_zone: int | None  # as last applied (None: never declared, or no state row)


@dataclasses.dataclass(frozen=True)
class NoteState:
    """What ``upsert_note_states`` writes for one note (decided by ``memory.decay._policy``)."""

    key: str
    zone: int  # the zone of a new row, or the declared zone when the declaration changed
    pinned: bool
    declared_zone: int | None
    source_at: float


@dataclasses.dataclass(frozen=True)
class TombstoneRow:
    kind: str
    item_id: str
    reason: str
    forgotten_at: float
    digest: str
    zone: int | None
    payload: dict[str, Any]
    trash_path: str | None
    file_state: str | None


@dataclasses.dataclass(frozen=True)
class LeaseRow:
    holder: str | None
    expires_at: float
    acquired_at: float | None
    last_run_at: float | None
    last_result: str | None


def _n(value: Any) -> int:
    return max(0, int(value or 0))


@dataclasses.dataclass(frozen=True)
class DecayWrites:
    """What the writer does for decay (set from ``decay:`` by the service): with decay enabled,
    recall touches are applied; disabled, touch records are settled without effect. (Tombstoned
    events are dropped from every batch either way: forget is a request, not decay.)"""

    enabled: bool = False
    initial_zones: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # False only to write as a version before tombstones did (tests of upgrades): no such table.
    tombstones: bool = True


class DecaySql:
    """Mixed into ``SqlStore``; uses its ``_errors``, ``_raw_write``, ``_fetch``, ``param``, ``dialect``,
    ``quote`` and ``queue_for_index``."""

    param: str
    dialect: str
    decay_writes: DecayWrites = DecayWrites()

    @property
    def decay_sql(self) -> DecayStatements:
        return SQLITE if self.dialect == "sqlite" else MYSQL

    @property
    def _in_chunk(self) -> int:
        """Ids per ``IN (...)`` list. SQLite has no round trip to save (and old builds allow 999
        parameters); on MariaDB a batch's ids go in one statement, kept under 1000 values because
        ``in_predicate_conversion_threshold`` (1000) turns longer lists into a derived table."""
        return 500 if self.dialect == "sqlite" else 999

    def _marks(self, n: int) -> str:
        return ", ".join([self.param] * n)

    # -- adoption ------------------------------------------------------------------------------------
    def adopt_events(self, cur: Any, after: str, page: int, zone: int, now: float) -> tuple[int, str | None]:
        """Give up to ``page`` events after ``after`` (in id order) that have no state row one in
        ``zone``, entered at the event's own time (at most ``now``). Returns (adopted, the last id
        adopted, or None when no event after ``after`` lacks a row).

        One anti-join walks the primary key of ``events`` and probes ``item_state``'s: when every
        event has its row (the steady state) that is a single statement over the whole table.
        """
        p = self.param
        cur.execute(f"SELECT e.event_id, e.ts FROM events e LEFT JOIN item_state s ON s.kind = '{KIND_EVENT}' "
                    f"AND s.item_id = e.event_id WHERE e.event_id > {p} AND s.item_id IS NULL "
                    f"ORDER BY e.event_id LIMIT {int(page)}", (after,))
        found = cur.fetchall()
        if not found:
            return 0, None
        cur.executemany(f"INSERT INTO item_state ({_STATE_COLS}) VALUES ({self._marks(10)}) "
                        f"{self.decay_sql.nothing.format(pk='kind')}",
                        [(KIND_EVENT, r[0], int(zone), min(float(r[1]), now), min(float(r[1]), now), 0, None, 0, None,
                          None) for r in found])
        return _n(cur.rowcount) if self.dialect == "sqlite" else len(found), str(found[-1][0])

    def note_changes(self, cur: Any, after: str, page: int) -> tuple[list[NoteChange], str | None]:
        """The next page of notes by key, keeping those whose state row is missing or was written
        for an older version of the note. Returns (changes, the page's last key or None when done)."""
        p, q = self.param, self.quote("key")  # type: ignore[attr-defined]
        cur.execute(f"SELECT MAX({q}) FROM (SELECT {q} FROM knowledge WHERE {q} > {p} ORDER BY {q} "
                    f"LIMIT {int(page)}) t", (after,))
        last = cur.fetchone()[0]
        if last is None:
            return [], None
        cur.execute(f"SELECT k.{q}, k.path, k.metadata_json, k.updated_at, s.item_id, s.declared_zone FROM knowledge k "
                    f"LEFT JOIN item_state s ON s.kind = '{KIND_NOTE}' AND s.item_id = k.{q} WHERE k.{q} > {p} "
                    f"AND k.{q} <= {p} AND (s.item_id IS NULL OR s.source_at IS NULL OR s.source_at <> k.updated_at)",
                    (after, last))
        out = [NoteChange(r[0], r[1], r[2], float(r[3]), r[4] is not None, None if r[5] is None else int(r[5]))
               for r in cur.fetchall()]
        return out, str(last)

    def upsert_note_states(self, cur: Any, states: Sequence[NoteState], now: float) -> int:
        """Insert new notes' rows; for existing ones refresh ``pinned`` and ``source_at``, and move the
        zone only when the front matter declares a zone other than the one last applied."""
        if not states:
            return 0
        d = self.decay_sql
        ex = d.excluded.format
        changed = (f"({ex(c='declared_zone')} IS NOT NULL AND (item_state.declared_zone IS NULL OR "
                   f"item_state.declared_zone <> {ex(c='declared_zone')}))")
        # Assignment order matters on MariaDB (each sees the ones before): ``declared_zone`` last.
        sql = (f"INSERT INTO item_state ({_STATE_COLS}) VALUES ({self._marks(10)}) {d.upsert} "
               f"zone_since = CASE WHEN {changed} THEN {ex(c='zone_since')} ELSE item_state.zone_since END, "
               f"idle_since = CASE WHEN {changed} THEN {d.greatest}({ex(c='zone_since')}, "
               "COALESCE(item_state.last_recalled_at, 0)) ELSE item_state.idle_since END, "
               f"zone = CASE WHEN {changed} THEN {ex(c='zone')} ELSE item_state.zone END, "
               f"pinned = {ex(c='pinned')}, source_at = {ex(c='source_at')}, "
               f"declared_zone = COALESCE({ex(c='declared_zone')}, item_state.declared_zone)")
        cur.executemany(sql, [(KIND_NOTE, s.key, int(s.zone), now, now, 0, None, int(s.pinned), s.declared_zone,
                               float(s.source_at)) for s in sorted(states, key=lambda s: s.key)])
        return len(states)

    def drop_missing_states(self, cur: Any, kind: str, limit: int) -> int:
        """Delete up to ``limit`` state rows whose source is gone (a note deleted in the vault)."""
        q = self.quote("key")  # type: ignore[attr-defined]
        table, col = ("events", "event_id") if kind == KIND_EVENT else ("knowledge", q)
        cur.execute(f"SELECT s.item_id FROM item_state s LEFT JOIN {table} x ON x.{col} = s.item_id "
                    f"WHERE s.kind = '{kind}' AND x.{col} IS NULL LIMIT {int(limit)}")
        gone = [r[0] for r in cur.fetchall()]
        for chunk in chunks(gone, self._in_chunk):
            cur.execute(f"DELETE FROM item_state WHERE kind = '{kind}' AND item_id IN ({self._marks(len(chunk))})",
                        list(chunk))
        return len(gone)

    # -- the decay scans ---------------------------------------------------------------------------------
    def idle_items(self, cur: Any, zone: int, cut: float, limit: int,
                   after: tuple[float, str, str] | None = None) -> list[tuple[str, str, float]]:
        """Unpinned items of ``zone`` idle since ``cut`` or earlier, oldest first (locked on MariaDB):
        ``(kind, item_id, idle_since)``. ``after`` (the last row of the previous batch) continues the
        scan past it on MariaDB, where the rows a batch just moved out stay in the index as
        delete-marked entries until purge, and a scan from the start would step over all of them
        again on every batch; SQLite removes them at once (and orders ties by rowid), so it starts over."""
        p = self.param
        where, args = "", [int(zone), cut]
        if after is not None and self.dialect != "sqlite":
            # The secondary index carries the primary key (kind, item_id): one range over all five.
            where = (f" AND (idle_since > {p} OR (idle_since = {p} AND (kind > {p} OR (kind = {p} AND "
                     f"item_id > {p}))))")
            args += [after[0], after[0], after[1], after[1], after[2]]
        order = "idle_since" if self.dialect == "sqlite" else "idle_since, kind, item_id"
        cur.execute(f"SELECT kind, item_id, idle_since FROM item_state WHERE pinned = 0 AND zone = {p} "
                    f"AND idle_since <= {p}{where} ORDER BY {order} LIMIT {int(limit)}{self.decay_sql.lock}", args)
        return [(r[0], r[1], float(r[2])) for r in cur.fetchall()]

    def count_protected(self, cur: Any, min_zone: int, decay_cut: float, forget_cut: float) -> int:
        """Pinned items that would otherwise be demoted or forgotten now."""
        p = self.param
        cur.execute(f"SELECT COUNT(*) FROM item_state WHERE pinned = 1 AND ((zone >= {p} AND zone < {CLOUD} AND "
                    f"idle_since <= {p}) OR (zone = {CLOUD} AND idle_since <= {p}))", (int(min_zone), decay_cut,
                                                                                         forget_cut))
        return _n(cur.fetchone()[0])

    def demote(self, cur: Any, zone: int, items: Sequence[tuple[str, str]], now: float) -> int:
        """Move ``items`` (all in ``zone``) one zone out, entered ``now``. Returns rows changed."""
        p, done = self.param, 0
        for kind in KINDS:
            ids = [i for k, i in items if k == kind]
            for chunk in chunks(ids, self._in_chunk):
                cur.execute(f"UPDATE item_state SET zone = zone + 1, zone_since = {p}, idle_since = {p} "
                            f"WHERE kind = {p} AND zone = {p} AND item_id IN ({self._marks(len(chunk))})",
                            [now, now, kind, int(zone), *chunk])
                done += _n(cur.rowcount)
        return done

    def pin_states(self, cur: Any, kind: str, ids: Sequence[str]) -> int:
        """Within the caller's transaction: mark ``ids`` pinned (a note pinned after its state row
        was written and before a refresh read its front matter). Returns rows changed."""
        done = 0
        for chunk in chunks(list(ids), self._in_chunk):
            cur.execute(f"UPDATE item_state SET pinned = 1 WHERE kind = {self.param} AND item_id IN "
                        f"({self._marks(len(chunk))})", [kind, *chunk])
            done += _n(cur.rowcount)
        return done

    def drop_states(self, cur: Any, kind: str, ids: Sequence[str]) -> None:
        """Within the caller's transaction: delete the state rows of ``ids`` (items whose source is gone)."""
        for chunk in chunks(list(ids), self._in_chunk):
            cur.execute(f"DELETE FROM item_state WHERE kind = {self.param} AND item_id IN ({self._marks(len(chunk))})",
                        [kind, *chunk])

    def zone_of(self, cur: Any, kind: str, item_id: str) -> int | None:
        """Within the caller's transaction: the item's zone, None without a state row."""
        p = self.param
        cur.execute(f"SELECT zone FROM item_state WHERE kind = {p} AND item_id = {p}", (kind, item_id))
        row = cur.fetchone()
        return None if row is None else int(row[0])

    # -- forgetting -----------------------------------------------------------------------------------
    def source_rows(self, cur: Any, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The rows of events (or notes) among ``ids`` that exist, as column -> value."""
        q = self.quote("key")  # type: ignore[attr-defined]
        cols, table, col = ((_EVENT_COLS, "events", "event_id") if kind == KIND_EVENT
                            else (_NOTE_COLS, "knowledge", q))
        out: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(dict.fromkeys(ids)), self._in_chunk):
            cur.execute(f"SELECT {', '.join(self.quote(c) for c in cols)} FROM {table} "  # type: ignore[attr-defined]
                        f"WHERE {col} IN ({self._marks(len(chunk))})", list(chunk))
            out.update({r[0]: dict(zip(cols, r)) for r in cur.fetchall()})
        return out

    def tombstone(self, cur: Any, kind: str, rows: Mapping[str, Mapping[str, Any]], zones: Mapping[str, int | None],
                  reason: str, now: float, file_state: str | None = None) -> list[str]:
        """Within the caller's transaction: tombstone ``rows`` (from ``source_rows``) and delete the
        items: source row, state row, edges in both directions; queue them for the recall index (its
        indexer removes their index rows and vectors; recall hides them at once). Returns the ids."""
        if not rows:
            return []
        p, q = self.param, self.quote("key")  # type: ignore[attr-defined]
        ids = sorted(rows)
        params = []
        for i in ids:
            row = dict(rows[i])
            digest = (str(row.get("digest")) if kind == KIND_NOTE
                      else hashlib.sha256(str(row.get("obs", "")).encode("utf-8", "surrogatepass")).hexdigest())
            params.append((kind, i, reason, now, digest[:64], zones.get(i), json.dumps(row, ensure_ascii=False), None,
                           file_state))
        # A second forget of one id (it came back by a path that does not drop tombstoned ids) keeps
        # the newest: the row just deleted is what a restore must bring back. The earlier file, if
        # any, stays in the trash.
        ex = self.decay_sql.excluded.format
        cols = ("reason", "forgotten_at", "digest", "zone", "payload", "trash_path", "file_state")
        cur.executemany(f"INSERT INTO tombstones (kind, item_id, {', '.join(cols)}) VALUES ({self._marks(9)}) "
                        f"{self.decay_sql.upsert} {', '.join(f'{c} = {ex(c=c)}' for c in cols)}", params)
        table, col = ("events", "event_id") if kind == KIND_EVENT else ("knowledge", q)
        for chunk in chunks(ids, self._in_chunk):
            marks = self._marks(len(chunk))
            cur.execute(f"DELETE FROM {table} WHERE {col} IN ({marks})", list(chunk))
            cur.execute(f"DELETE FROM item_state WHERE kind = {p} AND item_id IN ({marks})", [kind, *chunk])
            cur.execute(f"DELETE FROM graph_edges WHERE src IN ({marks})", list(chunk))
            cur.execute(f"DELETE FROM graph_edges WHERE dst IN ({marks})", list(chunk))
        self.queue_for_index(cur, kind, ids, now)  # type: ignore[attr-defined]
        return ids

    def set_trashed(self, kind: str, item_id: str, trash_path: str | None, file_state: str) -> bool:
        """Record where a forgotten note's file went (``trashed``), that there was none (``missing``)
        or that a different file sits at its path (``replaced``, left there). Only a ``pending``
        tombstone is settled, except that ``trashed`` also corrects ``missing``: two movers racing
        for one file (a run and a repeated forget in another process) cannot record "missing" over
        the other's move. False if nothing was recorded (settled or restored meanwhile)."""
        p = self.param
        states = "('pending', 'missing')" if file_state == "trashed" else "('pending')"
        with self.transaction() as cur:  # type: ignore[attr-defined]
            cur.execute(f"UPDATE tombstones SET trash_path = {p}, file_state = {p} WHERE kind = {p} AND item_id = {p} "
                        f"AND file_state IN {states}", (trash_path, file_state, kind, item_id))
            return _n(cur.rowcount) == 1

    def replaced_count(self) -> int:
        """Forgotten notes whose file was left in place because a different file had taken its path."""
        return _n(self._fetch("SELECT COUNT(*) FROM tombstones WHERE file_state = 'replaced'", ())[0][0])  # type: ignore[attr-defined]

    def pending_trash(self, limit: int) -> list[TombstoneRow]:
        """Forgotten notes whose file has not been moved yet (a process stopped in between)."""
        return self._tombstones(f"file_state = 'pending' ORDER BY forgotten_at LIMIT {int(limit)}", ())

    def _tombstones(self, where: str, params: tuple[Any, ...]) -> list[TombstoneRow]:
        rows = self._fetch("SELECT kind, item_id, reason, forgotten_at, digest, zone, payload, trash_path, "  # type: ignore[attr-defined]
                           f"file_state FROM tombstones WHERE {where}", params)
        out = []
        for r in rows:
            try:
                payload = json.loads(r[6])
            except (TypeError, ValueError):
                payload = {}
            out.append(TombstoneRow(r[0], r[1], r[2], float(r[3]), r[4], None if r[5] is None else int(r[5]),
                                    payload if isinstance(payload, dict) else {}, r[7], r[8]))
        return out

    def tombstones_of(self, item_id: str) -> list[TombstoneRow]:
        """The tombstones of ``item_id`` (one per kind; normally at most one)."""
        return self._tombstones(f"item_id = {self.param} ORDER BY kind", (item_id,))

    def tombstone_count(self) -> int:
        return _n(self._fetch("SELECT COUNT(*) FROM tombstones", ())[0][0])  # type: ignore[attr-defined]

    def drop_tombstoned(self, cur: Any, kind: str, ids: Sequence[str]) -> set[str]:
        """Within the caller's transaction: which of ``ids`` are tombstoned (the caller drops them
        from its batch). One indexed read per 500 ids; nothing when ``ids`` is empty."""
        found: set[str] = set()
        for chunk in chunks(list(dict.fromkeys(ids))):
            cur.execute(f"SELECT item_id FROM tombstones WHERE kind = {self.param} AND item_id IN "
                        f"({self._marks(len(chunk))})", [kind, *chunk])
            found.update(r[0] for r in cur.fetchall())
        return found

    def restore_row(self, cur: Any, tomb: TombstoneRow, zone: int, now: float) -> bool:
        """Within the caller's transaction: put a tombstoned item back (its row as it was, a fresh
        state row in ``zone``), delete the tombstone, queue it for the index. False if the tombstone
        is gone (restored meanwhile) or its payload cannot rebuild the row."""
        p, d = self.param, self.decay_sql
        cols = _EVENT_COLS if tomb.kind == KIND_EVENT else _NOTE_COLS
        if any(c not in tomb.payload for c in cols):
            return False
        cur.execute(f"DELETE FROM tombstones WHERE kind = {p} AND item_id = {p}", (tomb.kind, tomb.item_id))
        if _n(cur.rowcount) == 0:
            return False
        table, pk = ("events", "event_id") if tomb.kind == KIND_EVENT else ("knowledge", self.quote("key"))  # type: ignore[attr-defined]
        cur.execute(f"INSERT INTO {table} ({', '.join(self.quote(c) for c in cols)}) "  # type: ignore[attr-defined]
                    f"VALUES ({self._marks(len(cols))}) {d.nothing.format(pk=pk)}",
                    [tomb.payload[c] for c in cols])
        cur.execute(f"INSERT INTO item_state ({_STATE_COLS}) VALUES ({self._marks(10)}) "
                    f"{d.nothing.format(pk='item_state.kind')}",
                    (tomb.kind, tomb.item_id, int(zone), now, now, 0, None, 0, None, None))
        self.queue_for_index(cur, tomb.kind, [tomb.item_id], now)  # type: ignore[attr-defined]
        return True

    def item_kind(self, item_id: str) -> str | None:
        """``event``, ``knowledge`` or ``config`` for an id that exists, else None."""
        q = self.quote("key")  # type: ignore[attr-defined]
        p = self.param
        for kind, sql in ((KIND_EVENT, f"SELECT 1 FROM events WHERE event_id = {p}"),
                          (KIND_NOTE, f"SELECT 1 FROM knowledge WHERE {q} = {p}"),
                          ("config", f"SELECT 1 FROM configs WHERE {q} = {p}")):
            if self._fetch(sql, (item_id,)):  # type: ignore[attr-defined]
                return kind
        return None

    # -- touches from recall --------------------------------------------------------------------------
    def apply_touches(self, cur: Any, touches: Sequence[tuple[str, str, float]],
                      initial_zones: Mapping[str, int]) -> int:
        """Within the caller's transaction: count recalls and promote each touched item one zone.

        ``touches`` are ``(kind, item_id, at)``. An item's touches in the batch count together, at
        their newest time, and apply only if that is later than the stored ``last_recalled_at`` (a
        replayed batch changes nothing). Items with no state row yet get one, one zone inside
        their kind's initial zone. Items that do not exist or are tombstoned are skipped. One
        multi-row upsert (MariaDB) or one prepared statement (SQLite). Returns items applied.
        """
        clean: list[tuple[str, str, float]] = []
        for t in touches:
            try:
                kind, item_id, at = str(t[0]), str(t[1]), float(t[2])
            except (TypeError, ValueError, IndexError):
                continue  # a malformed touch is dropped, never raised into the writer
            if kind not in KINDS or not item_id or at != at:
                continue
            clean.append((kind, item_id, at))
        if not clean:
            return 0
        live: set[tuple[str, str]] = set()
        stored: dict[tuple[str, str], float] = {}
        for kind in KINDS:
            ids = list(dict.fromkeys(i for k, i, _ in clean if k == kind))
            if ids:
                present = set(self.source_rows_ids(cur, kind, ids)) - self.drop_tombstoned(cur, kind, ids)
                live.update((kind, i) for i in present)
                stored.update(self._last_recalled(cur, kind, [i for i in ids if i in present]))
        # Only touches newer than what is stored count: a replayed batch (the writer crashed after
        # commit) re-applies touches already counted, and they are exactly those not newer. Read
        # under the batch's write lock (SQLite) or a locking read (MariaDB), so it cannot go stale.
        agg: dict[tuple[str, str], tuple[int, float]] = {}
        for kind, item_id, at in clean:
            key = (kind, item_id)
            if key not in live or at <= stored.get(key, float("-inf")):
                continue
            n, newest = agg.get(key, (0, at))
            agg[key] = (n + 1, max(newest, at))
        live = set(agg)
        if not live:
            return 0
        d = self.decay_sql
        ex = d.excluded.format
        newer = f"(item_state.last_recalled_at IS NULL OR item_state.last_recalled_at < {ex(c='last_recalled_at')})"
        # MariaDB evaluates assignments left to right, each seeing the ones before: everything that
        # reads the old zone or the old last_recalled_at comes before the assignment that changes it.
        sql = (f"INSERT INTO item_state ({_STATE_COLS}) VALUES ({self._marks(10)}) {d.upsert} "
               f"zone_since = CASE WHEN {newer} AND item_state.zone > 0 THEN {ex(c='zone_since')} "
               "ELSE item_state.zone_since END, "
               f"idle_since = CASE WHEN {newer} THEN {d.greatest}(item_state.idle_since, {ex(c='last_recalled_at')}) "
               "ELSE item_state.idle_since END, "
               f"zone = CASE WHEN {newer} AND item_state.zone > 0 THEN item_state.zone - 1 ELSE item_state.zone END, "
               f"recall_count = CASE WHEN {newer} THEN item_state.recall_count + {ex(c='recall_count')} "
               "ELSE item_state.recall_count END, "
               f"last_recalled_at = CASE WHEN {newer} THEN {ex(c='last_recalled_at')} "
               "ELSE item_state.last_recalled_at END")
        rows = []
        for (kind, item_id) in sorted(live):  # key order: concurrent writers lock rows alike
            n, at = agg[(kind, item_id)]
            zone = max(0, int(initial_zones.get(kind, 2)) - 1)
            rows.append((kind, item_id, zone, at, at, n, at, 0, None, None))
        cur.executemany(sql, rows)
        return len(rows)

    def _last_recalled(self, cur: Any, kind: str, ids: Sequence[str]) -> dict[tuple[str, str], float]:
        lock = "" if self.dialect == "sqlite" else " FOR UPDATE"
        out: dict[tuple[str, str], float] = {}
        for chunk in chunks(list(ids)):
            cur.execute(f"SELECT item_id, last_recalled_at FROM item_state WHERE kind = {self.param} AND item_id IN "
                        f"({self._marks(len(chunk))}){lock}", [kind, *chunk])
            out.update(((kind, r[0]), float(r[1])) for r in cur.fetchall() if r[1] is not None)
        return out

    def source_rows_ids(self, cur: Any, kind: str, ids: Sequence[str]) -> set[str]:
        q = self.quote("key")  # type: ignore[attr-defined]
        table, col = ("events", "event_id") if kind == KIND_EVENT else ("knowledge", q)
        found: set[str] = set()
        for chunk in chunks(list(dict.fromkeys(ids))):
            cur.execute(f"SELECT {col} FROM {table} WHERE {col} IN ({self._marks(len(chunk))})", list(chunk))
            found.update(r[0] for r in cur.fetchall())
        return found

    # -- reads -------------------------------------------------------------------------------------
    def item_state(self, kind: str, item_id: str) -> ItemStateRow | None:
        p = self.param
        rows = self._fetch(f"SELECT {_STATE_COLS} FROM item_state WHERE kind = {p} AND item_id = {p}",  # type: ignore[attr-defined]
                           (kind, item_id))
        if not rows:
            return None
        r = rows[0]
        return ItemStateRow(r[0], r[1], int(r[2]), float(r[3]), float(r[4]), int(r[5]),
                            None if r[6] is None else float(r[6]), bool(r[7]), None if r[8] is None else int(r[8]),
                            None if r[9] is None else float(r[9]))

    def zone_counts(self, cur: Any | None = None) -> dict[int, int]:
        """Items per zone (every zone 0..4 present, 0 when empty); within ``cur``'s transaction if given."""
        sql = "SELECT zone, COUNT(*) FROM item_state GROUP BY zone"
        if cur is None:
            rows = self._fetch(sql, ())  # type: ignore[attr-defined]
        else:
            cur.execute(sql)
            rows = cur.fetchall()
        counts = {z: 0 for z in range(CLOUD + 1)}
        for zone, n in rows:
            counts[int(zone)] = _n(n)
        return counts

    # -- the lease ---------------------------------------------------------------------------------
    def take_lease(self, name: str, holder: str, now: float, ttl: float, min_interval: float = 0.0) -> bool:
        """Take (or renew) the lease ``name`` for ``ttl`` seconds if it expired or is ``holder``'s,
        and no run finished within ``min_interval`` seconds. True if ``holder`` now holds it."""
        p = self.param
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            cur.execute(f"UPDATE decay_lease SET holder = {p}, expires_at = {p}, acquired_at = {p} WHERE name = {p} "
                        f"AND (expires_at < {p} OR holder = {p}) AND (last_run_at IS NULL OR last_run_at <= {p})",
                        (holder, now + ttl, now, name, now, holder, now - min_interval))
            return _n(cur.rowcount) == 1

    def renew_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Extend ``holder``'s lease; False if it is no longer ``holder``'s (expired and taken)."""
        p = self.param
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            cur.execute(f"UPDATE decay_lease SET expires_at = {p} WHERE name = {p} AND holder = {p}",
                        (now + ttl, name, holder))
            return _n(cur.rowcount) == 1

    def release_lease(self, name: str, holder: str, last_run_at: float | None = None,
                      last_result: str | None = None) -> bool:
        """Give the lease up (expired at once); record the finished run's time and summary if given."""
        p = self.param
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            if last_run_at is None:
                cur.execute(f"UPDATE decay_lease SET expires_at = 0 WHERE name = {p} AND holder = {p}", (name, holder))
            else:
                cur.execute(f"UPDATE decay_lease SET expires_at = 0, last_run_at = {p}, last_result = {p} "
                            f"WHERE name = {p} AND holder = {p}", (last_run_at, last_result, name, holder))
            return _n(cur.rowcount) == 1

    def lease(self, name: str) -> LeaseRow | None:
        rows = self._fetch(f"SELECT holder, expires_at, acquired_at, last_run_at, last_result FROM decay_lease "  # type: ignore[attr-defined]
                           f"WHERE name = {self.param}", (name,))
        if not rows:
            return None
        r = rows[0]
        return LeaseRow(r[0], float(r[1]), r[2], r[3], r[4])
