"""The Markdown vault: files are the truth, the database holds a synced, queryable copy.

* Reads come from the files, so they work while the database is down.
* ``sync()`` snapshots the files, asks the pure planner what changed and applies it to the
  database and ``metadata.json``. With ``reconcile=True`` (start-up, ``memory vault sync``) the
  last synced state is read from the database itself, so a lost or corrupt ``metadata.json``
  (only a cache of digests and mtimes) is simply rebuilt.
* Service writes are atomic (temporary file in the same folder, fsync, ``os.replace``) and
  compare-and-swap on the digest the vault last saw: if a human changed the file since, the
  service's version goes to ``<name>.md.conflict-<time>`` next to it and the human's file is
  left alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from .._config import VaultConfig
from .._errors import StoreError
from ..store import SqlStore
from ._layout import (CONFIG_DIR, CONFLICT_MARK, KNOWLEDGE_DIR, METADATA_FILE, config_path, is_note_path, key_of,
                      knowledge_path, user_key)
from ._parse import Parsed, parse, render
from ._plan import FileState, Known, Plan, plan
from ._scan import digest_of, note_paths, snapshot

log = logging.getLogger("memory.vault")


@dataclasses.dataclass(frozen=True)
class Note:
    """One vault document, parsed. ``content`` is the body without front matter."""

    key: str
    kind: str  # "config" or "knowledge"
    category: str
    path: str  # relative to the vault root, POSIX separators
    title: str
    content: str
    metadata: dict[str, Any]
    tags: tuple[str, ...] = ()
    headings: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    digest: str = ""
    invalid: str | None = None
    conflict_path: str | None = None  # set when a write went to a conflict copy instead


@dataclasses.dataclass(frozen=True)
class SyncReport:
    new: int
    modified: int
    moved: int
    deleted: int
    unchanged: int
    invalid: tuple[tuple[str, str], ...]
    database_ok: bool
    seconds: float


def _decode(data: bytes) -> tuple[str, str | None]:
    try:
        return data.decode("utf-8").lstrip("\ufeff"), None
    except UnicodeDecodeError as exc:
        return data.decode("utf-8", "replace"), f"not valid UTF-8 (byte {exc.start}); decoded with replacement"


class Vault:
    def __init__(self, config: VaultConfig, store: SqlStore | None) -> None:
        self.root = config.root_path
        self.max_bytes = config.max_file_size_kb * 1024
        self.store = store
        self.lock = threading.RLock()
        self._known: dict[str, Known] = {}
        self._problems: dict[str, str] = {}  # path -> why it is invalid (still indexed if readable)
        self._conflicts: set[str] = set()
        self._loaded = False
        self.db_pending = True  # the database has not yet caught up with the files
        self.last_sync: SyncReport | None = None

    # -- metadata.json (a cache) ---------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            data = json.loads((self.root / METADATA_FILE).read_text(encoding="utf-8"))
            files = data["files"]
            for path, e in files.items():
                self._known[path] = Known(str(e["digest"]), int(e["mtime_ns"]), int(e["size"]), bool(e["synced"]))
                if e.get("invalid"):
                    self._problems[path] = str(e["invalid"])
            self._conflicts = {c for c in data.get("conflicts", []) if (self.root / c).exists()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s is unreadable (%s); rebuilding it from the files", self.root / METADATA_FILE, exc)
            self._known.clear()

    def _save(self) -> None:
        problems = self._problems
        data = {"version": 1, "files": {
            p: {"digest": k.digest, "mtime_ns": k.mtime_ns, "size": k.size, "synced": k.synced,
                "invalid": problems.get(p)} for p, k in sorted(self._known.items())},
            "conflicts": sorted(self._conflicts)}
        tmp = self.root / f".{METADATA_FILE}.tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.root / METADATA_FILE)
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
            states, contents = snapshot(self.root, known, self.max_bytes)
            the_plan = plan(states, known)
            ok = self._apply(the_plan, states, contents, known)
            report = SyncReport(len(the_plan.new), len(the_plan.modified), len(the_plan.moved), len(the_plan.deleted),
                                len(the_plan.unchanged), the_plan.invalid, ok, time.perf_counter() - started)
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

    def _note_row(self, rel: str, data: bytes, st: FileState) -> tuple[str, tuple[Any, ...]]:
        text, decode_problem = _decode(data)
        parsed = parse(text, rel)
        problem = "; ".join(p for p in (decode_problem, parsed.invalid) if p)
        if problem:
            self._problems[rel] = problem
        else:
            self._problems.pop(rel, None)
        kind, key, category = key_of(rel)
        meta = json.dumps(parsed.metadata, ensure_ascii=False, default=str) if parsed.metadata else None
        now = time.time()
        if kind == "config":
            return "configs", (key, rel, parsed.title, parsed.body, meta, st.digest, st.mtime_ns, now)
        return "knowledge", (key, category, rel, parsed.title, parsed.body, json.dumps(list(parsed.tags)),
                             json.dumps(list(parsed.headings)), json.dumps(list(parsed.links)), meta, st.digest,
                             st.mtime_ns, now)

    def _apply(self, the_plan: Plan, states: dict[str, FileState], contents: dict[str, bytes],
               known: dict[str, Known]) -> bool:
        problems_before = dict(self._problems)
        rows: dict[str, list[tuple[Any, ...]]] = {"configs": [], "knowledge": []}
        deletes: dict[str, list[str]] = {"configs": [], "knowledge": []}
        touched = [*the_plan.new, *the_plan.modified, *(new for _, new in the_plan.moved)]
        for rel in touched:
            data = contents.get(rel)
            if data is None:
                try:
                    data = (self.root / rel).read_bytes()
                except OSError:
                    continue
            table, row = self._note_row(rel, data, states[rel])
            rows[table].append(row)
        gone = [*the_plan.deleted, *(old for old, new in the_plan.moved if key_of(old) != key_of(new))]
        for rel in gone:
            kind, key, _ = key_of(rel)
            deletes["configs" if kind == "config" else "knowledge"].append(key)
            self._problems.pop(rel, None)
        for rel, why in the_plan.invalid:
            self._problems[rel] = why
        ok = True
        if self.store is not None and (touched or gone):
            try:
                for table in ("configs", "knowledge"):
                    self.store.delete_notes(table, deletes[table])
                    self.store.upsert_notes(table, rows[table])
            except StoreError as exc:
                ok = False
                log.warning("vault sync could not reach the database (%s); will retry", exc)
        elif self.store is None:
            ok = False
        # Record what we saw. Unsynced entries (DB down) are retried by the next sync.
        new_known = {p: k for p, k in known.items() if p in states}
        for rel in touched:
            st = states[rel]
            new_known[rel] = Known(st.digest or "", st.mtime_ns, st.size, ok)
        if not ok:
            for rel in gone:  # keep vanished entries until the database has dropped their rows
                if rel in known:
                    new_known[rel] = dataclasses.replace(known[rel], synced=False)
        for rel in list(self._problems):
            if rel not in states and rel not in new_known:
                self._problems.pop(rel, None)
        unchanged = new_known == self._known and problems_before == self._problems
        self._known = new_known
        self.db_pending = not ok or any(not k.synced for k in new_known.values())
        if not unchanged:  # a no-change sync of a large vault must not rewrite metadata.json
            self._save()
        return ok

    # -- reading (from the files) ----------------------------------------------------------------------
    def _read(self, rel: str) -> Note | None:
        path = self.root / rel
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        text, problem = _decode(data)
        return self._to_note(rel, parse(text, rel), digest_of(data), problem)

    @staticmethod
    def _to_note(rel: str, p: Parsed, digest: str, problem: str | None = None,
                 conflict: str | None = None) -> Note:
        kind, key, category = key_of(rel)
        invalid = "; ".join(x for x in (problem, p.invalid) if x) or None
        return Note(key, kind, category, rel, p.title, p.body, p.metadata, p.tags, p.headings, p.links, digest,
                    invalid, conflict)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def read_config(self, key: str) -> Note | None:
        _, path = config_path(self.root, key)
        return self._read(self._rel(path))

    def read_user(self, user_id: object) -> Note | None:
        return self.read_config(user_key(user_id))

    def read_knowledge(self, key: str) -> Note | None:
        _, path = knowledge_path(self.root, key)
        return self._read(self._rel(path))

    def list_knowledge(self, category: str | None = None) -> list[Note]:
        notes = []
        for rel in sorted(note_paths(self.root)):
            if not rel.startswith(KNOWLEDGE_DIR + "/"):
                continue
            if category is not None and key_of(rel)[2] != category:
                continue
            note = self._read(rel)
            if note is not None:
                notes.append(note)
        return notes

    def search(self, query: str, limit: int = 5) -> list[Note]:
        """Keyword search: every word must appear in the title, tags or body; title hits rank first."""
        words = [w for w in query.lower().split() if w]
        if not words:
            return []
        candidates: list[Note] | None = None
        if self.store is not None and not self.db_pending:
            try:
                rows = self.store.search_knowledge(words, limit)
                candidates = [n for n in (self._read(r["path"]) for r in rows) if n is not None]
            except StoreError:
                candidates = None
        if candidates is None:  # the database is behind or down: the files answer
            candidates = self.list_knowledge()

        def score(n: Note) -> int:
            title, body, tags = n.title.lower(), n.content.lower(), " ".join(n.tags).lower()
            if not all(w in title or w in body or w in tags for w in words):
                return 0
            return sum(5 * title.count(w) + 3 * tags.count(w) + body.count(w) for w in words)

        ranked = sorted(((score(n), n.key, n) for n in candidates), key=lambda t: (-t[0], t[1]))
        return [n for s, _, n in ranked if s > 0][: max(0, int(limit))]

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
        with self.lock:
            self._load()
            seen = self._known.get(rel)
            try:
                current = digest_of(path.read_bytes())
            except FileNotFoundError:
                current = None
            if current is not None and (seen is None or seen.digest != current):
                # A human changed (or created) this file and the vault has not synced that yet:
                # their version stays, ours goes next to it.
                conflict = path.with_name(f"{path.name}{CONFLICT_MARK}{time.strftime('%Y%m%dT%H%M%S')}"
                                          f"-{os.getpid()}")
                atomic_write(conflict, data)
                self._conflicts.add(self._rel(conflict))
                self._save()
                log.warning("vault conflict: %s changed since it was last synced; wrote %s instead", rel,
                            conflict.name)
                return self._to_note(rel, parse(text, rel), digest_of(data), conflict=self._rel(conflict))
            atomic_write(path, data)
            st = path.stat()
            state = FileState(rel, st.st_mtime_ns, st.st_size, digest_of(data))
            self._sync_one(rel, data, state)
            return self._to_note(rel, parse(text, rel), state.digest or "")

    def _sync_one(self, rel: str, data: bytes | None, state: FileState | None) -> None:
        """Push one file's new state (or its deletion, when ``state`` is None) to the database."""
        kind, key, _ = key_of(rel)
        table = "configs" if kind == "config" else "knowledge"
        ok = self.store is not None
        try:
            if self.store is not None:
                if state is None:
                    self.store.delete_notes(table, [key])
                else:
                    self.store.upsert_notes(table, [self._note_row(rel, data or b"", state)[1]])
        except StoreError as exc:
            ok = False
            log.warning("vault: %s written, database not updated yet (%s)", rel, exc)
        if state is None:
            if ok:
                self._known.pop(rel, None)
        else:
            self._known[rel] = Known(state.digest or "", state.mtime_ns, state.size, ok)
        self.db_pending = self.db_pending or not ok
        self._save()

    def delete_knowledge(self, key: str) -> bool:
        """Delete a note. Refuses (returns False, logs a conflict) if a human changed it unsynced."""
        _, path = knowledge_path(self.root, key)
        rel = self._rel(path)
        with self.lock:
            self._load()
            try:
                current = digest_of(path.read_bytes())
            except FileNotFoundError:
                return False
            seen = self._known.get(rel)
            if seen is None or seen.digest != current:
                log.warning("vault conflict: not deleting %s, it changed since it was last synced", rel)
                return False
            path.unlink()
            self._sync_one(rel, None, None)
            return True

    # -- checks ------------------------------------------------------------------------------------------
    def conflicts(self) -> list[str]:
        with self.lock:
            self._load()
            self._conflicts = {c for c in self._conflicts if (self.root / c).exists()}
            found = {p.relative_to(self.root).as_posix() for top in (CONFIG_DIR, KNOWLEDGE_DIR)
                     if (self.root / top).is_dir() for p in (self.root / top).rglob(f"*{CONFLICT_MARK}*")}
            return sorted(self._conflicts | found)

    def problems(self) -> dict[str, str]:
        with self.lock:
            self._load()
            return dict(self._problems)

    def check(self) -> dict[str, Any]:
        """Invalid files, conflicts, and files and rows that disagree."""
        with self.lock:
            self._load()
            states, _ = snapshot(self.root, {}, self.max_bytes)
            files = {p: s.digest for p, s in states.items() if s.digest is not None}
            rows: dict[str, str] | None = None
            if self.store is not None:
                try:
                    rows = {path: digest for _k, (digest, path) in
                            {**self.store.note_digests("configs"), **self.store.note_digests("knowledge")}.items()}
                except StoreError:
                    rows = None
        out: dict[str, Any] = {"root": str(self.root), "files": len(files), "invalid": self.problems(),
                               "conflicts": self.conflicts(), "database": rows is not None}
        if rows is not None:
            out["missing_rows"] = sorted(p for p in files if p not in rows)
            out["orphan_rows"] = sorted(p for p in rows if p not in states)
            out["stale_rows"] = sorted(p for p in files if p in rows and rows[p] != files[p])
        out["ok"] = rows is not None and not (out["conflicts"] or out.get("missing_rows") or out.get("orphan_rows")
                                              or out.get("stale_rows"))
        return out

    def is_relevant(self, path: str) -> bool:
        try:
            rel = Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return False
        return is_note_path(rel) or ("." not in rel.rsplit("/", 1)[-1] and rel.split("/")[0] in (CONFIG_DIR,
                                                                                                  KNOWLEDGE_DIR))


def atomic_write(path: Path, data: bytes) -> None:
    """Temporary file in the same folder, fsync, rename over the target, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
