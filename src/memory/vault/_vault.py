"""The Markdown vault: files are the truth, the database holds a synced, queryable copy.

* Reads come from the files, so they work while the database is down. Nothing outside the
  vault root is ever read: every open goes component by component with ``O_NOFOLLOW``
  (:mod:`._fs`), and symbolic links below the root are reported and skipped, never followed.
* ``sync()`` snapshots the files, asks the pure planner what changed and applies it to the
  database and ``metadata.json``. With ``reconcile=True`` (start-up, ``memory vault sync``) the
  last synced state is read from the database itself, so a lost or corrupt ``metadata.json``
  (only a cache of digests and mtimes) is simply rebuilt.
* A row the database rejects does not stop the others: the batch is split until the bad row
  stands alone, and that note is reported (``problems()``, ``check()``) and searched from its
  file. It is retried when the file changes or at the next reconcile (start-up, ``memory vault
  sync``) — not on every watcher sync, which would re-split the batch every few seconds.
* Service writes compare-and-swap on the digest the vault last synced (:mod:`._swap`): if a
  human changed the file since — even in the microseconds between the check and the rename —
  the human's version stays and the service's goes to ``<name>.md.conflict-<time>``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._audit_events import VAULT_CONFLICT
from .._config import VaultConfig
from .._errors import InvalidKeyError, StoreError
from ..store import SqlStore
from ._fs import Refused, read_at, read_note, walk, write_root_file
from ._layout import KNOWLEDGE_DIR, METADATA_FILE, config_path, is_note_path, key_of, knowledge_path, user_key
from ._links import knowledge_keys, link_targets
from ._note import Note, SyncReport, binary, decode, inside, note_from_bytes, to_note
from ._parse import parse, render
from ._plan import FileState, Known, Plan, plan
from ._scan import Snapshot, digest_of, snapshot
from ._search import ESCAPE, like_patterns, rank, score, score_note, words_of
from ._swap import cas_delete, cas_write

log = logging.getLogger("memory.vault")
MAX_TITLE_BYTES = 65_535  # the title column is TEXT: 64 KB on MySQL (SQLite does not check)


class Vault:
    def __init__(self, config: VaultConfig, store: SqlStore | None, *,
                 audit: Callable[..., None] | None = None) -> None:
        """``audit(event, **fields)`` (optional, never raising) hears of each new conflict copy."""
        self.root = config.root_path
        self._audit = audit
        self.max_bytes = config.max_file_size_kb * 1024
        self.store = store
        self.lock = threading.RLock()
        self._known: dict[str, Known] = {}
        self._problems: dict[str, str] = {}  # path -> why it is invalid (still indexed if readable)
        self._folders: dict[str, str] = {}  # folder -> why its entries could not be seen (last sync)
        self._unreadable: set[str] = set()  # notes present but not read at the last sync
        self._not_in_db: set[str] = set()  # readable notes the database does not hold (rejected)
        self._forgotten: dict[str, str] = {}  # path -> key: a forgotten note's content, kept out on purpose
        self._conflicts: set[str] = set()
        self._loaded = False
        self.db_pending = True  # the database has not yet caught up with the files
        self.last_sync: SyncReport | None = None
        self._root_texts = tuple(dict.fromkeys(str(r).rstrip("/") + "/" for r in (self.root, self.root.resolve())))

    # -- metadata.json (a cache) ---------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            data = json.loads(read_note(self.root, METADATA_FILE, None)[1].decode("utf-8"))
            for path, e in data["files"].items():
                if not inside(path):
                    continue
                self._known[path] = Known(str(e["digest"]), int(e["mtime_ns"]), int(e["size"]), bool(e["synced"]))
                if e.get("invalid"):
                    self._problems[path] = str(e["invalid"])
            self._conflicts = {c for c in data.get("conflicts", []) if inside(c) and os.path.lexists(self.root / c)}
        except FileNotFoundError:
            pass
        except (OSError, Refused, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s is unreadable (%s); rebuilding it from the files", self.root / METADATA_FILE, exc)
            self._known.clear()
            self._problems.clear()

    def _save(self) -> None:
        problems = self._problems
        data = {"version": 1, "files": {
            p: {"digest": k.digest, "mtime_ns": k.mtime_ns, "size": k.size, "synced": k.synced,
                "invalid": problems.get(p)} for p, k in sorted(self._known.items())},
            "conflicts": sorted(self._conflicts)}
        try:
            write_root_file(self.root, METADATA_FILE,
                            json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        except OSError as exc:
            log.warning("cannot write %s: %s", self.root / METADATA_FILE, exc)

    # -- sync ------------------------------------------------------------------------------------------
    def _db_known(self) -> dict[str, Known] | None:
        """The last synced state as the database has it (None if the database is unavailable)."""
        if self.store is None:
            return None
        try:
            rows = {**self.store.note_digests("configs"), **self.store.note_digests("knowledge")}
        except StoreError:
            return None
        known: dict[str, Known] = {}
        for _key, (digest, path) in rows.items():
            cached = self._known.get(path)
            if cached is not None and cached.digest == digest:
                known[path] = Known(digest, cached.mtime_ns, cached.size, True)
            else:
                known[path] = Known(digest, -1, -1, True)  # no shortcut: hash the file
        return known

    def sync(self, reconcile: bool = False) -> SyncReport:
        """Bring the database (and metadata.json) in line with the files. Never raises on DB trouble."""
        started = time.perf_counter()
        with self.lock:
            self._load()
            known = dict(self._known)
            if reconcile:
                db_known = self._db_known()
                if db_known is not None:
                    # Entries the DB lacks but metadata has: keep them unsynced so they are re-sent.
                    known = {**{p: dataclasses.replace(k, synced=False) for p, k in known.items()}, **db_known}
                    self._forgotten = {p: k for p, k in self._forgotten.items() if p not in db_known}  # restored
            snap = snapshot(self.root, known, self.max_bytes)
            the_plan = plan(snap.states, known)
            ok, refused = self._apply(the_plan, snap, known)
            invalid = tuple(sorted({**dict(the_plan.invalid), **dict(refused)}.items()))
            report = SyncReport(len(the_plan.new), len(the_plan.modified), len(the_plan.moved), len(the_plan.deleted),
                                len(the_plan.unchanged), invalid, ok, time.perf_counter() - started)
            self.last_sync = report
            return report

    def rebuild(self) -> SyncReport:
        """Drop every vault row and sync everything again from the files (the reindex tool)."""
        with self.lock:
            self._load()
            if self.store is not None:
                for table in ("configs", "knowledge"):
                    self.store.delete_notes(table, list(self.store.note_digests(table)))
            self._known.clear()  # the rows are gone: nothing counts as synced any more
            return self.sync(reconcile=False)

    def _note_row(self, rel: str, data: bytes, st: FileState,
                  keys: Iterable[str] = ()) -> tuple[str, tuple[Any, ...], tuple[str, ...]]:
        """(table, row, the knowledge keys it links to) for a note (``keys``: the knowledge keys
        that exist, to resolve links by name); raises ValueError if the database could not hold it."""
        text, decode_problem = decode(data)
        parsed = parse(text, rel)
        problem = "; ".join(p for p in (decode_problem, parsed.invalid) if p)
        if problem:
            self._problems[rel] = problem
        else:
            self._problems.pop(rel, None)
        if len(parsed.title.encode("utf-8")) > MAX_TITLE_BYTES:
            raise ValueError(f"its title is longer than the database holds ({MAX_TITLE_BYTES} bytes)")
        kind, key, category = key_of(rel)
        meta = json.dumps(parsed.metadata, ensure_ascii=False) if parsed.metadata else None
        now = time.time()
        if kind == "config":
            return "configs", (key, rel, parsed.title, parsed.body, meta, st.digest, st.mtime_ns, now), ()
        targets = link_targets(rel, parsed.refs, keys if isinstance(keys, (set, frozenset)) else set(keys))
        return "knowledge", (key, category, rel, parsed.title, parsed.body, json.dumps(list(parsed.tags)),
                             json.dumps(list(parsed.headings)), json.dumps(list(parsed.links)), meta, st.digest,
                             st.mtime_ns, now), targets

    def _refuse(self, rel: str, why: str) -> None:
        """Record that a readable note is not in the database (searched from its file instead)."""
        parse_problem = self._problems.get(rel)
        message = f"not stored in the database: {why}"
        self._problems[rel] = f"{parse_problem}; {message}" if parse_problem and message not in parse_problem \
            else message
        self._not_in_db.add(rel)
        log.warning("vault: %s is not stored in the database: %s", rel, why)

    def _upsert_isolating(self, table: str, items: list[tuple[str, tuple[Any, ...]]],
                          links: dict[str, tuple[str, ...]] | None = None) -> list[tuple[str, str]]:
        """Upsert rows; a batch the database rejects is split until each bad row stands alone.
        ``links`` (knowledge key -> keys it links to) go with their rows (the graph's edges).
        Rows the store left out as forgotten notes are noted in ``_forgotten``.

        Returns (path, reason) of the rows rejected. Transient errors propagate (the caller
        retries the whole sync later); a connection dropped *because of* a row (MySQL's
        packet-too-large) counts as a rejection when the database still answers a ping.
        """
        assert self.store is not None
        rejected: list[tuple[str, str]] = []
        pending = [items] if items else []
        while pending:
            part = pending.pop()
            try:
                part_links = None if links is None else {row[0]: links[row[0]] for _, row in part if row[0] in links}
                gone = set(self.store.upsert_notes(table, [row for _, row in part], part_links))
                self._forgotten.update((rel, row[0]) for rel, row in part if row[0] in gone)
            except StoreError as exc:
                if exc.transient and not (getattr(exc, "row_suspect", False) and self.store.ping()):
                    raise
                if len(part) == 1:
                    rejected.append((part[0][0], f"the database rejected it ({exc})"))
                    continue
                mid = len(part) // 2
                pending += [part[mid:], part[:mid]]
        return rejected

    def _apply(self, the_plan: Plan, snap: Snapshot, known: dict[str, Known]) -> tuple[bool, list[tuple[str, str]]]:
        problems_before = dict(self._problems)
        states = snap.states
        rows: dict[str, list[tuple[str, tuple[Any, ...]]]] = {"configs": [], "knowledge": []}
        deletes: dict[str, list[str]] = {"configs": [], "knowledge": []}
        refused: list[tuple[str, str]] = []
        touched = [*the_plan.new, *the_plan.modified, *(new for _, new in the_plan.moved)]
        keys = knowledge_keys(states)
        links: dict[str, tuple[str, ...]] = {}
        for rel in touched:
            data = snap.contents.get(rel)
            if data is None:  # every changed file was read by the snapshot; be safe anyway
                continue
            try:
                table, row, targets = self._note_row(rel, data, states[rel], keys)
            except ValueError as exc:
                refused.append((rel, str(exc)))
                continue
            rows[table].append((rel, row))
            if table == "knowledge":
                links[row[0]] = targets
        gone = [*the_plan.deleted, *(old for old, new in the_plan.moved if key_of(old) != key_of(new))]
        # A moved note keeps its edges: they go to its new key before the old row is deleted.
        renames = [(key_of(old)[1], key_of(new)[1]) for old, new in the_plan.moved
                   if key_of(old) != key_of(new) and key_of(old)[0] == key_of(new)[0] == "knowledge"]
        for rel in gone:
            kind, key, _ = key_of(rel)
            deletes["configs" if kind == "config" else "knowledge"].append(key)
            self._problems.pop(rel, None)
        for rel, why in the_plan.invalid:
            self._problems[rel] = why
        ok = self.store is not None
        forgotten_before = dict(self._forgotten)
        if self.store is not None and (touched or gone):
            for rel in (*touched, *gone):  # the store says again which of them stay out
                self._forgotten.pop(rel, None)
            try:
                for table in ("configs", "knowledge"):
                    self.store.delete_notes(table, deletes[table], forget_edges=True,
                                            renames=renames if table == "knowledge" else ())
                    refused += self._upsert_isolating(table, rows[table], links if table == "knowledge" else None)
            except StoreError as exc:
                ok = False
                self._forgotten = forgotten_before
                log.warning("vault sync could not reach the database (%s); will retry", exc)
        self._forgotten = {p: k for p, k in self._forgotten.items() if p in states}
        for rel in sorted(self._forgotten.keys() - forgotten_before.keys()):  # once, not at every sync
            log.info("vault: %s holds a forgotten note's content; it stays out of the database until restored", rel)
        if ok:
            self._not_in_db -= {*touched, *gone}
            for rel, why in refused:
                self._refuse(rel, why)
        new_known = self._next_known(states, snap.contents, known, set(touched), ok)
        if not ok:
            for rel in gone:  # keep vanished entries until the database has dropped their rows
                if rel in known:
                    new_known[rel] = dataclasses.replace(known[rel], synced=False)
        for rel in list(self._problems):
            if rel not in states and rel not in new_known:
                self._problems.pop(rel, None)
        self._not_in_db &= set(states)
        self._unreadable = {rel for rel, _ in the_plan.invalid}
        self._folders = dict(snap.unlisted)
        for conflict in sorted(set(snap.conflicts) - self._conflicts):
            self._report_conflict(conflict, "found by sync")
        self._conflicts |= set(snap.conflicts)
        unchanged = new_known == self._known and problems_before == self._problems
        self._known = new_known
        self.db_pending = not ok or any(not k.synced for k in new_known.values())
        if not unchanged:  # a no-change sync of a large vault must not rewrite metadata.json
            self._save()
        return ok, refused

    @staticmethod
    def _next_known(states: dict[str, FileState], hashed: Iterable[str], known: dict[str, Known],
                    touched: set[str], ok: bool) -> dict[str, Known]:
        """What the next sync may assume. Entries the shortcut confirmed, and unreadable notes, keep
        theirs; every hashed file records its current (mtime, size) — so the shortcut works again
        after a ``touch``, a rebuilt cache or a racy hash — except a racy one, recorded without an
        mtime (no shortcut next time)."""
        out = {p: k for p, k in known.items() if p in states}
        for rel in hashed:
            st = states[rel]
            mtime = -1 if st.racy else st.mtime_ns
            if rel in touched:
                out[rel] = Known(st.digest or "", mtime, st.size, ok)
            elif (k := known.get(rel)) is not None and (k.mtime_ns != mtime or k.size != st.size):
                out[rel] = Known(k.digest, mtime, st.size, k.synced)
        return out

    # -- reading (from the files) ----------------------------------------------------------------------
    def _read(self, rel: str, strict: bool = False) -> Note | None:
        """The note at ``rel``, or None if it is absent or not readable as a note. With ``strict``,
        a symbolic link on the way raises InvalidKeyError (a key must not name a link)."""
        try:
            _, data = read_note(self.root, rel, self.max_bytes)
        except Refused as exc:
            if strict and exc.link:
                raise InvalidKeyError(f"{rel!r} passes through a symbolic link; the vault follows no links") from None
            return None
        except OSError:
            return None
        return None if binary(data) else self._from_bytes(rel, data)

    @staticmethod
    def _from_bytes(rel: str, data: bytes) -> Note:
        return note_from_bytes(rel, data)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def read_config(self, key: str) -> Note | None:
        _, path = config_path(self.root, key)
        return self._read(self._rel(path), strict=True)

    def read_user(self, user_id: object) -> Note | None:
        return self.read_config(user_key(user_id))

    def read_knowledge(self, key: str) -> Note | None:
        _, path = knowledge_path(self.root, key)
        return self._read(self._rel(path), strict=True)

    def list_knowledge(self, category: str | None = None) -> list[Note]:
        notes: list[Note] = []

        def visit(dir_fd: int, name: str, rel: str, st: os.stat_result) -> None:
            if (category is not None and key_of(rel)[2] != category) or st.st_size > self.max_bytes:
                return
            try:
                _, data = read_at(dir_fd, name, self.max_bytes)
            except (OSError, Refused):
                return
            if not binary(data):
                notes.append(self._from_bytes(rel, data))

        walk(self.root, visit, tops=(KNOWLEDGE_DIR,))
        return sorted(notes, key=lambda n: n.path)

    def search(self, query: str, limit: int = 5) -> list[Note]:
        """Keyword search (rules in :mod:`._search`): the database when it is current, else the files."""
        words = words_of(query)
        limit = max(0, int(limit))
        if not words or not limit:
            return []
        if self.store is not None and not self.db_pending:
            try:
                return self._search_database(words, limit)
            except StoreError:
                pass
        return self._search_files(words, limit)

    def _search_files(self, words: list[str], limit: int) -> list[Note]:
        with self.lock:
            forgotten = set(self._forgotten)
        return rank(((score_note(n.title, n.content, n.tags, words), n.key, n) for n in self.list_knowledge()
                     if n.path not in forgotten), limit)

    def _search_database(self, words: list[str], limit: int) -> list[Note]:
        assert self.store is not None
        rows = self.store.search_knowledge(like_patterns(words), ESCAPE)
        with self.lock:
            from_files = set(self._not_in_db)  # the database lacks them (or holds an old version)
            skip = self._unreadable | from_files
        scored: list[tuple[int, str, str]] = []
        for r in rows:
            path = r["path"]
            if path in skip:
                continue
            try:
                tags = " ".join(str(t) for t in json.loads(r["tags"] or "[]")).lower()
            except (ValueError, TypeError):
                tags = ""
            scored.append((score(str(r["title"]).lower(), str(r["content"]).lower(), tags, words), str(r["key"]), path))
        extra: dict[str, Note] = {}
        for path in from_files:
            note = self._read(path) if path.startswith(KNOWLEDGE_DIR + "/") else None
            if note is not None:
                extra[path] = note
                scored.append((score_note(note.title, note.content, note.tags, words), note.key, path))
        out: list[Note] = []
        for path in rank(scored, len(scored)):
            # A path from the database is only read if it names a knowledge note inside the vault.
            note = extra.get(path) or (self._read(path) if is_note_path(path) and inside(path)
                                       and path.startswith(KNOWLEDGE_DIR + "/") else None)
            if note is not None:  # gone or unreadable since the last sync: the next one stands in
                out.append(note)
                if len(out) == limit:
                    break
        return out

    # -- writing (compare-and-swap, atomic) --------------------------------------------------------------
    def write_config(self, key: str, content: str, metadata: dict[str, Any] | None) -> Note:
        _, path = config_path(self.root, key)
        return self._write(path, content, metadata)

    def write_user(self, user_id: object, content: str, metadata: dict[str, Any] | None) -> Note:
        return self.write_config(user_key(user_id), content, metadata)

    def write_knowledge(self, key: str, content: str, metadata: dict[str, Any] | None) -> Note:
        _, path = knowledge_path(self.root, key)
        return self._write(path, content, metadata)

    def _write(self, path: Path, content: str, metadata: dict[str, Any] | None) -> Note:
        text = render(str(content), metadata)
        data = text.encode("utf-8")
        rel = self._rel(path)
        parts = rel.split("/")
        with self.lock:
            self._load()
            seen = self._known.get(rel)
            try:
                outcome = cas_write(self.root, parts, data, seen.digest if seen is not None else None)
            except Refused as exc:
                raise InvalidKeyError(f"{rel!r}: {exc.reason}") from None
            if not outcome.written:
                # A human changed (or created) this file and the vault has not synced that yet:
                # their version stays, ours goes next to it.
                conflict = "/".join([*parts[:-1], outcome.conflict or ""])
                self._conflicts.add(conflict)
                self._save()
                self._report_conflict(conflict, "service write", note=rel)
                log.warning("vault conflict: %s changed since it was last synced; wrote %s instead", rel,
                            outcome.conflict)
                return to_note(rel, parse(text, rel), digest_of(data), conflict=conflict)
            st = outcome.stat
            # Just written, so its mtime is "now": racy by definition (no shortcut next time).
            state = FileState(rel, st.st_mtime_ns if st else -1, len(data), digest_of(data), racy=True)
            self._sync_one(rel, data, state)
            return to_note(rel, parse(text, rel), state.digest or "")

    def _sync_one(self, rel: str, data: bytes | None, state: FileState | None) -> None:
        """Push one file's new state (or its deletion, when ``state`` is None) to the database."""
        kind, key, _ = key_of(rel)
        table = "configs" if kind == "config" else "knowledge"
        ok = self.store is not None
        refused: list[tuple[str, str]] = []
        forgotten = self._forgotten.pop(rel, None)
        try:
            if self.store is not None:
                if state is None:
                    self.store.delete_notes(table, [key], forget_edges=True)
                else:
                    try:
                        _, row, targets = self._note_row(rel, data or b"", state, knowledge_keys({*self._known, rel}))
                        refused = self._upsert_isolating(table, [(rel, row)],
                                                         {key: targets} if table == "knowledge" else None)
                    except ValueError as exc:
                        refused = [(rel, str(exc))]
        except StoreError as exc:
            ok = False
            if forgotten is not None:
                self._forgotten[rel] = forgotten
            log.warning("vault: %s written, database not updated yet (%s)", rel, exc)
        if ok:
            self._not_in_db.discard(rel)
            for path, why in refused:
                self._refuse(path, why)
        if state is None:
            if ok:
                self._known.pop(rel, None)
                self._problems.pop(rel, None)
        else:
            self._known[rel] = Known(state.digest or "", -1 if state.racy else state.mtime_ns, state.size, ok)
        self.db_pending = self.db_pending or not ok
        self._save()

    def delete_knowledge(self, key: str) -> bool:
        """Delete a note. Refuses (returns False, logs a conflict) if a human changed it unsynced."""
        _, path = knowledge_path(self.root, key)
        rel = self._rel(path)
        with self.lock:
            self._load()
            seen = self._known.get(rel)
            try:
                deleted = seen is not None and cas_delete(self.root, rel.split("/"), seen.digest)
            except Refused as exc:
                raise InvalidKeyError(f"{rel!r}: {exc.reason}") from None
            if not deleted:
                if os.path.lexists(path):
                    log.warning("vault conflict: not deleting %s, it changed since it was last synced", rel)
                return False
            self._sync_one(rel, None, None)
            return True

    # -- checks ------------------------------------------------------------------------------------------
    def _report_conflict(self, conflict: str, how: str, note: str | None = None) -> None:
        if self._audit is None:
            return
        try:
            self._audit(VAULT_CONFLICT, copy=conflict, note=note, how=how)
        except Exception:  # noqa: BLE001 - the audit log never reaches a vault write or sync
            pass

    def conflicts(self) -> list[str]:
        """Conflict copies known to exist (made by this service, or found by the last scan)."""
        with self.lock:
            self._load()
            self._conflicts = {c for c in self._conflicts if os.path.lexists(self.root / c)}
            return sorted(self._conflicts)

    def problems(self) -> dict[str, str]:
        """Every path with a problem, in plain words (folders end with ``/``)."""
        with self.lock:
            self._load()
            folders = {f"{f}/" if f else "./": f"this folder {why}" for f, why in self._folders.items()}
            return {**self._problems, **folders}

    def report(self) -> dict[str, Any]:
        """For health(): every problem in plain words, and the two kinds that mean the database
        cannot match the files — folders that could not be read, notes it does not hold — and the
        notes it leaves out on purpose (a forgotten note's content, as of the last sync)."""
        with self.lock:
            return {"problems": self.problems(), "unreadable_folders": sorted(f"{f}/" for f in self._folders),
                    "not_in_database": sorted(self._not_in_db), "forgotten": {
                        p: f"the content of a forgotten note: kept out of memory until `memory restore {k}` brings "
                           "it back (an edited file is a new note)" for p, k in sorted(self._forgotten.items())}}

    def check(self) -> dict[str, Any]:
        """Invalid files, conflicts, and files and rows that disagree."""
        with self.lock:
            self._load()
            rows: dict[str, str] | None = None
            if self.store is not None:
                try:
                    rows = {path: digest for _k, (digest, path) in
                            {**self.store.note_digests("configs"), **self.store.note_digests("knowledge")}.items()}
                except StoreError:
                    rows = None
            # Hash every file (no shortcut); what rows (or the cache) know marks notes hidden by an
            # unlistable folder as present, so they are not reported as orphans.
            base = ({p: Known(d, -1, -1, True) for p, d in rows.items()} if rows is not None
                    else {p: dataclasses.replace(k, mtime_ns=-1) for p, k in self._known.items()})
            snap = snapshot(self.root, base, self.max_bytes)
            self._conflicts |= set(snap.conflicts)
            fresh = {p: s.error or "unreadable" for p, s in snap.states.items() if s.digest is None}
            folders = {f"{f}/" if f else "./": f"this folder {why}" for f, why in snap.unlisted.items()}
            invalid = {**self.problems(), **fresh, **folders}
            not_in_db = set(self._not_in_db)
            forgotten = set(self._forgotten)
        files = {p: s.digest for p, s in snap.states.items() if s.digest is not None}
        out: dict[str, Any] = {"root": str(self.root), "files": len(files), "invalid": dict(sorted(invalid.items())),
                               "conflicts": self.conflicts(), "database": rows is not None}
        if rows is not None:
            out["missing_rows"] = sorted(p for p in files if p not in rows and p not in forgotten)
            out["forgotten"] = sorted(forgotten & set(files))
            out["orphan_rows"] = sorted(p for p in rows if p not in snap.states)
            out["stale_rows"] = sorted(p for p in files if p in rows and rows[p] != files[p])
        # Rows cannot agree with files that were not seen or that the database refused.
        out["ok"] = rows is not None and not (out["conflicts"] or out.get("missing_rows") or out.get("orphan_rows")
                                              or out.get("stale_rows") or snap.unlisted or not_in_db & set(files))
        return out

    def is_relevant(self, path: str) -> bool:
        """Lexically (no file system access): a note path, or a folder that may hold notes."""
        rel = None
        for prefix in self._root_texts:
            if path.startswith(prefix):
                rel = os.path.normpath(path[len(prefix):]).replace(os.sep, "/")
                break
        if rel is None or rel.startswith("../") or rel == "..":
            return False
        return is_note_path(rel) or ("." not in rel.rsplit("/", 1)[-1] and rel.split("/")[0] in ("md", KNOWLEDGE_DIR))
