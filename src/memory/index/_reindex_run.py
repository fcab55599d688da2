"""One reindex run, as ``memory reindex`` and ``tools/memory_reindex.py`` perform it.

The order of a run, and why:

1. **Refuse what would do harm.** Recall switched off has no index to rebuild; an embedder that
   cannot load here (``embedder: minilm`` without the extra) would index every item keyword-only
   and strip the vectors the configured embedder made, so the run stops before touching anything.
2. **The schema to head**, so the recall tables exist (the first database call: an unreachable
   database fails here, with its address in the message).
3. **The vault into the database** (``Vault.sync(reconcile=True)``: new, changed, moved and
   deleted files). It writes the changed notes only: the rows of unchanged notes, and so their
   index rows, stay as they are. ``rebuild_vault`` drops every vault row and writes it again from
   its file instead, which also repairs rows edited in the database behind the vault's back — but
   while it runs the notes are missing, and a live service's indexer may remove their index rows
   in that window (they are indexed again by this run: work thrown away), hence not the default.
4. **The walk** (:class:`~memory.index._indexer.Reindexer`): every source page by id, unchanged
   items skipped (same digest, same embedder name and dimension: ``embedder_id``) unless
   ``full``; a checkpoint after every page, so a run killed at any point resumes where it
   stopped; orphans removed at the end of each kind; the checkpoint cleared once every kind is
   done.

A live service may append to the same database meanwhile: its appends go to its own journal and
never wait on this run; each page commits in a short transaction of its own (the embedding
happens before it), and a change the service makes to an item while it is being reindexed is
still in the outbox afterwards (``apply_index`` clears only outbox entries it handled).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any, Protocol

from .._config import Config
from .._errors import MemoryServiceError, StoreError
from ..store import create_store
from ..store._recall import KIND_EVENT, KIND_NOTE
from ..vault import SyncReport, Vault
from ._documents import embedder_id
from ._embed import Embedder, EmbedderUnavailable
from ._indexer import KINDS_ORDER, BatchOutcome, IndexSettings, Reindexer, ReindexStep
from ._module import build_embedder

_TABLE = {KIND_NOTE: "knowledge", KIND_EVENT: "events"}


class ReindexError(MemoryServiceError):
    """A reindex cannot run (or cannot go on) here; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ReindexOptions:
    kinds: tuple[str, ...] = KINDS_ORDER
    full: bool = False
    vault_sync: bool = True
    rebuild_vault: bool = False


def parse_kinds_list(value: str | Iterable[str]) -> tuple[str, ...]:
    """``knowledge,event`` (or an iterable of names) in index order; ValueError for anything else."""
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    bad = [v for v in items if v not in KINDS_ORDER]
    if bad or not items:
        raise ValueError(f"expected a comma-separated list of {', '.join(KINDS_ORDER)}, got {value!r}")
    return tuple(k for k in KINDS_ORDER if k in items)


@dataclasses.dataclass
class KindTally:
    scanned: int = 0
    indexed: int = 0
    removed: int = 0
    unchanged: int = 0

    def add(self, scanned: int, out: BatchOutcome) -> None:
        self.scanned += scanned
        self.indexed += out.indexed
        self.removed += out.removed
        self.unchanged += out.unchanged


@dataclasses.dataclass(frozen=True)
class ReindexSummary:
    kinds: dict[str, KindTally]
    seconds: float
    embedder: str | None  # as stored with each vector: name/dim (``embedder_id``)
    dim: int | None
    items: int  # rows in recall_items afterwards (every kind)
    resumed: bool
    full: bool
    vault: SyncReport | None

    def total(self, field: str) -> int:
        return sum(int(getattr(t, field)) for t in self.kinds.values())

    def as_dict(self) -> dict[str, Any]:
        vault: dict[str, Any] | None = None
        if self.vault is not None:
            v = self.vault
            vault = {"new": v.new, "modified": v.modified, "moved": v.moved, "deleted": v.deleted,
                     "unchanged": v.unchanged, "notes": v.new + v.modified + v.moved + v.unchanged,
                     "invalid": dict(v.invalid), "database_ok": v.database_ok}
        return {
            "kinds": {k: dataclasses.asdict(t) for k, t in self.kinds.items()},
            **{f: self.total(f) for f in ("scanned", "indexed", "removed", "unchanged")},
            "seconds": round(self.seconds, 3), "embedder": self.embedder, "dim": self.dim, "items": self.items,
            "resumed": self.resumed, "full": self.full, "vault": vault,
        }


class Progress(Protocol):
    """What a run reports while it works (the CLI draws it; the default says nothing)."""

    def message(self, text: str) -> None: ...

    def begin(self, totals: dict[str, int], resumed: bool) -> None: ...

    def advance(self, step: ReindexStep) -> None: ...

    def end(self) -> None: ...


class SilentProgress:
    def message(self, text: str) -> None:
        pass

    def begin(self, totals: dict[str, int], resumed: bool) -> None:
        pass

    def advance(self, step: ReindexStep) -> None:
        pass

    def end(self) -> None:
        pass


def checkpointed(reindexer: Reindexer) -> bool:
    """Whether an earlier run left a checkpoint this one continues from.

    Not ``Reindexer.resuming()``: ``clear()`` writes a row (value 2) rather than deleting it, so
    that answers True after every finished run. A cleared cursor reads ``(False, "")``.
    """
    return any(reindexer.cursor(k) != (False, "") for k in reindexer.kinds)


def usable_embedder(config: Config) -> Embedder | None:
    """The configured embedder, loaded and tried once; raises rather than index without it."""
    embedder, problem = build_embedder(config.recall)
    if problem is not None:
        raise EmbedderUnavailable(f"{config.source}: recall.embedder: {problem.split('; recall is')[0]}; "
                                  "not reindexing (it would drop every vector): install it, or set "
                                  "recall.embedder to hash or none")
    if embedder is not None:
        embedder.embed(["reindex"])  # a model that fails to load fails here, before any change
    return embedder


def run_reindex(config: Config, options: ReindexOptions = ReindexOptions(),
                progress: Progress | None = None) -> ReindexSummary:
    """One run (see the module docstring). Raises ReindexError (recall off, database unreachable or
    failing mid-run — the checkpoint keeps the work done so far) or EmbedderUnavailable."""
    progress = progress or SilentProgress()
    started = time.monotonic()
    if not config.recall.enabled:
        raise ReindexError(f"{config.source}: recall.enabled is false: there is no recall index to rebuild")
    embedder = usable_embedder(config)
    settings = IndexSettings(head_weight=config.recall.head_weight, paths=config.recall.event_field_paths(),
                             batch_size=config.recall.indexer_batch_size,
                             interval_s=config.recall.indexer_interval_ms / 1000)
    store = create_store(config.database)
    try:
        try:
            store.initialize()
        except StoreError as exc:
            raise ReindexError(f"database {config.database.safe_dsn} unreachable: {exc}") from exc
        report: SyncReport | None = None
        if options.vault_sync:
            vault = Vault(config.vault, store)
            report = vault.rebuild() if options.rebuild_vault else vault.sync(reconcile=True)
            if not report.database_ok:
                raise ReindexError(f"vault sync: the database {config.database.safe_dsn} did not take every "
                                   "change; nothing reindexed (see `memory vault check`)")
            progress.message(f"vault synced: {report.new} new, {report.modified} modified, {report.moved} moved, "
                             f"{report.deleted} deleted, {report.unchanged} unchanged")
        reindexer = Reindexer(store, embedder, settings, kinds=options.kinds, full=options.full)
        tally = {k: KindTally() for k in reindexer.kinds}
        try:
            resumed = checkpointed(reindexer)
            if resumed:
                progress.message("resuming from checkpoint")
            progress.begin({k: store.count(_TABLE[k]) for k in reindexer.kinds}, resumed)
            while True:
                step = reindexer.step()
                if step.kind:
                    tally[step.kind].add(step.scanned, step.outcome)
                progress.advance(step)
                if step.finished:
                    break
            reindexer.clear()
            items = store.index_counts().items
        except StoreError as exc:
            raise ReindexError(f"database {config.database.safe_dsn} failed during the reindex: {exc}; the work "
                               "done so far is checkpointed: run again to resume") from exc
        finally:
            progress.end()
    finally:
        store.dispose()
    return ReindexSummary(tally, time.monotonic() - started, embedder_id(embedder),
                          None if embedder is None else embedder.dim, items, resumed, options.full, report)
