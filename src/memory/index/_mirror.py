"""This process's copy of the stored vectors, kept in step with ``recall_items``.

The database holds the truth (vectors with their embedder's name and dimension); every process
keeps the vectors of its configured embedder in a :class:`VectorIndex` and follows changes made
by any process's indexer. ``refresh`` costs one tiny query when nothing changed (the ``version``
and ``removals`` rows); otherwise it reads rows above the highest doc_id it has (items are
replaced with new doc_ids, committed in doc_id order — see ``memory.store._recall``), and
reconciles ids with the database only when ``removals`` moved (never a COUNT over the table).
"""

from __future__ import annotations

import threading

import numpy as np

from ..store import SqlStore
from ._documents import vector_from_bytes
from ._vectors import VectorFilter, VectorHit, VectorIndex, VectorRow

PAGE = 5_000


class VectorMirror:
    def __init__(self, store: SqlStore, embedder_name: str, dim: int) -> None:
        self.store, self.embedder_name, self.dim = store, embedder_name, dim
        self.index = VectorIndex(dim)
        self._doc_of: dict[tuple[str, str], int] = {}
        self._key_of: dict[int, tuple[str, str]] = {}
        self._max_doc = 0
        self._versions: tuple[int, int] | None = None  # (version, removals) last caught up with
        self._lock = threading.Lock()  # one refresh at a time; searches never wait for it
        self.loaded = False

    def __len__(self) -> int:
        return len(self.index)

    def refresh(self) -> bool:
        """Catch up with the database. True if anything changed. Raises StoreError."""
        with self._lock:
            versions = self.store.index_versions()
            if versions == self._versions:
                return False
            changed = self._load_after()
            # Replacements arrive above the high-water mark; only removals for good need the ids.
            if self._versions is None or versions[1] != self._versions[1]:
                changed = self._reconcile() or changed
            self._versions, self.loaded = versions, True
            return changed

    def _load_after(self) -> bool:
        changed = False
        while True:
            rows = self.store.index_vectors(self.embedder_name, self._max_doc, PAGE)
            batch: list[VectorRow] = []
            for doc_id, kind, item_id, session_key, ts, blob in rows:
                doc_id = int(doc_id)
                self._max_doc = max(self._max_doc, doc_id)
                vec = vector_from_bytes(blob, self.dim)
                if vec is None or not np.all(np.isfinite(vec)) or not np.any(vec):
                    continue
                key = (kind, item_id)
                old = self._doc_of.get(key)
                if old is not None:
                    self._key_of.pop(old, None)
                self._doc_of[key], self._key_of[doc_id] = doc_id, key
                batch.append(VectorRow(kind, item_id, vec, session_key, ts))
            if batch:
                self.index.upsert(batch)
                changed = True
            if len(rows) < PAGE:
                return changed

    def _reconcile(self) -> bool:
        """Something was removed: drop the local rows whose doc_id the database no longer has."""
        remote = self.store.index_doc_ids(self.embedder_name)
        gone = [d for d in self._key_of if d not in remote]
        keys = [self._key_of.pop(d) for d in gone]
        for key in keys:
            self._doc_of.pop(key, None)
        self.index.remove(keys)
        if len(remote) != len(self._key_of):
            # Rows below our high-water mark that we never saw (should not happen with the
            # serialized indexers, but a restored backup could do it): load everything again.
            self._doc_of.clear()
            self._key_of.clear()
            self._max_doc = 0
            self.index.rebuild([])
            self._load_after()
        return bool(keys)

    def search(self, query: np.ndarray, k: int, flt: VectorFilter, min_score: float | None) -> list[VectorHit]:
        return self.index.search(query, k, flt, min_score=min_score)
