"""Keeping the index in step with the database: the batch step, the background worker, reindexing.

* ``index_keys`` is the one step everything uses: read the sources of some items, turn them into
  documents, skip the ones whose stored row already matches (digest and embedder), embed the
  rest, and apply the change in one transaction that also clears their outbox entries.
* ``Reindexer`` walks whole tables in id order (keyset pages) with a checkpoint in
  ``recall_state`` after every page: killed, it resumes where it stopped; re-running a page is
  harmless (rows are keyed by item, unchanged items are skipped). It finishes by removing index
  rows whose source is gone. The reindex tool and the first-start backfill both use it.
* ``IndexWorker`` is the background loop (``initialize / loop_once / shutdown``): the outbox
  first (fresh writes), then any unfinished backfill, then a refresh of this process's vectors.
  It never runs on a caller's thread; its failures are counted and logged, never raised.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from .._errors import StoreError
from ..store import SqlStore
from ..store._recall import KIND_EVENT, KIND_NOTE, IndexedMeta
from ._documents import Document, embedder_id, event_document, index_rows, needs_index, note_document
from ._embed import Embedder, EmbedderUnavailable
from ._extract import DEFAULT_FIELD_PATHS, FieldPath

log = logging.getLogger("memory.index")

KINDS_ORDER = (KIND_NOTE, KIND_EVENT)
CLEARED = 2  # a checkpoint row's value once its run finished and was cleared


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    head_weight: int = 3
    paths: tuple[FieldPath, ...] = DEFAULT_FIELD_PATHS
    batch_size: int = 256
    interval_s: float = 0.5


@dataclasses.dataclass(frozen=True)
class BatchOutcome:
    indexed: int = 0
    removed: int = 0
    unchanged: int = 0

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        return BatchOutcome(self.indexed + other.indexed, self.removed + other.removed,
                            self.unchanged + other.unchanged)


def load_documents(store: SqlStore, keys: Sequence[tuple[str, str]],
                   settings: IndexSettings) -> dict[tuple[str, str], Document | None]:
    """Each key's document, or None when its source is gone or (an event) holds no text."""
    ev_ids = [i for k, i in keys if k == KIND_EVENT]
    note_ids = [i for k, i in keys if k == KIND_NOTE]
    events = store.event_sources(ev_ids) if ev_ids else {}
    notes = store.note_sources(note_ids) if note_ids else {}
    out: dict[tuple[str, str], Document | None] = {}
    for kind, item_id in keys:
        if kind == KIND_EVENT:
            e = events.get(item_id)
            out[(kind, item_id)] = None if e is None else event_document(item_id, e[0], e[1], e[2], settings.paths)
        elif kind == KIND_NOTE:
            n = notes.get(item_id)
            out[(kind, item_id)] = None if n is None else note_document(item_id, *n)
        else:
            out[(kind, item_id)] = None  # an unknown kind in the outbox: nothing to index
    return out


def index_keys(store: SqlStore, embedder: Embedder | None, settings: IndexSettings,
               keys: Sequence[tuple[str, str]], *, force: bool = False,
               done: Sequence[tuple[str, str, int]] = ()) -> BatchOutcome:
    """Bring the index rows of ``keys`` in line with their sources; clear ``done`` from the outbox."""
    keys = list(dict.fromkeys(keys))
    docs = load_documents(store, keys, settings)
    meta: dict[tuple[str, str], IndexedMeta] = {}
    for kind in {k for k, _ in keys}:
        for item_id, m in store.indexed_meta(kind, [i for k, i in keys if k == kind]).items():
            meta[(kind, item_id)] = m
    name = embedder_id(embedder)
    todo = [d for d in docs.values() if d is not None and
            (force or needs_index(d, meta.get(d.key), settings.head_weight, name))]
    remove = [key for key, d in docs.items() if d is None and key in meta]
    unchanged = len(keys) - len(todo) - len(remove)
    if not todo and not remove:
        store.clear_outbox(done)
        return BatchOutcome(unchanged=unchanged)
    rows = index_rows(todo, embedder, settings.head_weight)
    store.apply_index(rows, remove, done)
    return BatchOutcome(len(rows), len(remove), unchanged)


@dataclasses.dataclass(frozen=True)
class ReindexStep:
    kind: str
    scanned: int
    outcome: BatchOutcome
    finished: bool  # every kind is done


class Reindexer:
    """A resumable walk over the sources (see the module docstring). ``name`` scopes the
    checkpoint: the reindex tool and the first-start backfill keep separate ones."""

    def __init__(self, store: SqlStore, embedder: Embedder | None, settings: IndexSettings, *,
                 kinds: Iterable[str] = KINDS_ORDER, full: bool = False, name: str = "reindex",
                 page: int | None = None) -> None:
        self.store, self.embedder, self.settings = store, embedder, settings
        self.kinds = tuple(k for k in KINDS_ORDER if k in set(kinds))
        self.full, self.name = full, name + (":full" if full else "")
        self.page = page or settings.batch_size

    def _cursor_name(self, kind: str) -> str:
        return f"{self.name}:{kind}"

    def cursor(self, kind: str) -> tuple[bool, str]:
        """(finished, last id done) for one kind; a cleared checkpoint means "from the top"."""
        st = self.store.get_state(self._cursor_name(kind))
        return (False, "") if st is None or st[0] == CLEARED else (st[0] == 1, st[1] or "")

    def resuming(self) -> bool:
        """True when an earlier run of this kind stopped part-way (a checkpoint is left)."""
        for k in self.kinds:
            st = self.store.get_state(self._cursor_name(k))
            if st is not None and st[0] != CLEARED and (st[0] == 1 or st[1]):
                return True
        return False

    def step(self) -> ReindexStep:
        """One page of the first unfinished kind (or one batch of its orphan sweep)."""
        for kind in self.kinds:
            finished, after = self.cursor(kind)
            if finished:
                continue
            ids = self.store.source_page(kind, after, self.page)
            if ids:
                out = index_keys(self.store, self.embedder, self.settings, [(kind, i) for i in ids], force=self.full)
                self.store.set_state(self._cursor_name(kind), 0, ids[-1])
                return ReindexStep(kind, len(ids), out, False)
            orphans = self.store.orphan_items(kind, self.page)
            if orphans:
                self.store.apply_index([], [(kind, o) for o in orphans], [])
                return ReindexStep(kind, 0, BatchOutcome(removed=len(orphans)), False)
            self.store.set_state(self._cursor_name(kind), 1, after)
            return ReindexStep(kind, 0, BatchOutcome(), kind == self.kinds[-1])
        return ReindexStep("", 0, BatchOutcome(), True)

    def clear(self) -> None:
        """Forget the checkpoint (after a finished run, so the next run starts from the top)."""
        for kind in self.kinds:
            self.store.set_state(self._cursor_name(kind), CLEARED, None)


@dataclasses.dataclass
class WorkerStats:
    batches: int = 0
    indexed: int = 0
    removed: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None
    backfill_done: bool = False


class IndexWorker:
    """The background indexer of one service (one per process; several share the outbox safely)."""

    def __init__(self, store: SqlStore, embedder: Embedder | None, settings: IndexSettings, *,
                 ready: Callable[[], bool], refresh: Callable[[], object] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, warn: Callable[[str, str], None] | None = None,
                 on_embedder_failure: Callable[[EmbedderUnavailable], None] | None = None) -> None:
        self.store, self.embedder, self.settings = store, embedder, settings
        self._on_embedder_failure = on_embedder_failure
        self._ready, self._refresh, self._clock = ready, refresh, clock
        self._warn = warn or (lambda key, msg: log.warning("%s", msg))
        self.stats = WorkerStats()
        self._backfill: Reindexer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = 0.0

    # -- the loop ------------------------------------------------------------------------------
    def initialize(self) -> None:
        """Decide whether a backfill is owed: a database indexed by an older version, or never."""
        st = self.store.get_state("backfill")
        self.stats.backfill_done = st is not None and st[0] == 1
        if not self.stats.backfill_done:
            self._backfill = Reindexer(self.store, self.embedder, self.settings, name="backfill")

    def loop_once(self) -> int:
        """Index one outbox batch (or one backfill page), then refresh the vectors. Returns the
        number of items handled; 0 means idle. Raises StoreError (the thread counts it)."""
        if not self._ready():
            return 0
        if self._backfill is None and not self.stats.backfill_done:
            self.initialize()
        work = 0
        batch = self.store.outbox_batch(self.settings.batch_size)
        if batch:
            out = index_keys(self.store, self.embedder, self.settings, [(k, i) for k, i, _ in batch], done=batch)
            self._count(out)
            work = len(batch)
        elif self._backfill is not None:
            step = self._backfill.step()
            self._count(step.outcome)
            work = max(step.scanned, 1)
            if step.finished:
                self.store.set_state("backfill", 1, None)
                self._backfill, self.stats.backfill_done = None, True
        self._refresh()
        self.stats.last_ok_at = time.time()
        return work

    def _count(self, out: BatchOutcome) -> None:
        self.stats.batches += 1
        self.stats.indexed += out.indexed
        self.stats.removed += out.removed

    def shutdown(self) -> None:
        self._stop.set()

    # -- the thread -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="memory-indexer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self.shutdown()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                work = self.loop_once()
                self._backoff = 0.0
            except EmbedderUnavailable as exc:
                work = 0
                self.stats.errors += 1
                self.stats.last_error, self.stats.last_error_at = str(exc), time.time()
                if self._on_embedder_failure is not None:
                    self._on_embedder_failure(exc)  # keyword-only from now on; the next loop goes on
                else:
                    self.embedder = None
            except Exception as exc:  # noqa: BLE001 - the indexer must outlive any failure
                work = 0
                self.stats.errors += 1
                self.stats.last_error, self.stats.last_error_at = f"{type(exc).__name__}: {exc}", time.time()
                # An outage is the writer's news; the indexer waits it out quietly, backing off.
                self._backoff = min(30.0, max(self.settings.interval_s, self._backoff * 2))
                if not isinstance(exc, StoreError):
                    self._warn("indexer", f"recall indexer failed: {exc}")
            if work == 0 or self._backoff:
                self._stop.wait(self._backoff or self.settings.interval_s)
