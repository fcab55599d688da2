"""The recall plug-in as the service sees it: built from ``recall:``, started, stopped, reported.

``RecallModule`` owns the embedder, this process's vector mirror, the background
:class:`IndexWorker` and the query side. It is fail-open like the rest of the service: an
embedder that cannot load means keyword-only recall (and a health warning), an indexer failure
is counted and retried, and ``enabled: false`` builds nothing and queues nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._config import RecallConfig
from .._errors import StoreError
from ..store import SqlStore
from ._documents import embedder_id
from ._embed import Embedder, EmbedderUnavailable, MiniLMEmbedder, make_embedder
from ._fusion import Hit, parse_kinds
from ._indexer import IndexSettings, IndexWorker
from ._mirror import VectorMirror
from ._recall import Recall

log = logging.getLogger("memory.recall")

#: The outbox's oldest entry older than this (seconds) while the database answers: "behind".
LAG_WARN_S = 300.0


def build_embedder(config: RecallConfig) -> tuple[Embedder | None, str | None]:
    """The configured embedder, or (None, why) when it cannot work here (keyword-only then)."""
    if config.embedder == "none":
        return None, None
    if config.embedder == "minilm":
        why = MiniLMEmbedder.unavailable_reason()
        if why is not None:
            return None, f"embedder minilm unavailable ({why}); recall is keyword-only"
        # torch's thread count is process-wide: set it only when the config asks for it.
        threads = config.embedder_threads or None
        return make_embedder("minilm", threads=threads), None
    return make_embedder("hash", dim=config.hash_dim), None


class RecallModule:
    def __init__(self, config: RecallConfig, store: SqlStore, *, pending_events: Callable[[], Iterable[tuple[Any, ...]]],
                 online: Callable[[], bool], offline_notes: Callable[[], Iterable[Any]],
                 ready: Callable[[], bool], warn: Callable[[str, str], None] | None = None) -> None:
        self.config, self.store = config, store
        self.enabled = config.enabled
        store.recall_outbox_enabled = config.enabled
        self._online = online
        self.embedder_problem: str | None = None
        self.embedder: Embedder | None = None
        self.mirror: VectorMirror | None = None
        self.worker: IndexWorker | None = None
        self.query: Recall | None = None
        if not self.enabled:
            return
        self.embedder, self.embedder_problem = build_embedder(config)
        if self.embedder_problem:
            log.warning("%s", self.embedder_problem)
        if self.embedder is not None:
            self.mirror = VectorMirror(store, str(embedder_id(self.embedder)), self.embedder.dim)
        settings = IndexSettings(head_weight=config.head_weight, paths=config.event_field_paths(),
                                 batch_size=config.indexer_batch_size, interval_s=config.indexer_interval_ms / 1000)
        mirror = self.mirror
        self.worker = IndexWorker(store, self.embedder, settings, ready=ready, refresh=self._refresh, warn=warn,
                                  on_embedder_failure=self._embedder_failed)
        self.query = Recall(store, config, self.embedder, self.mirror, pending_events=pending_events,
                            online=online, offline_notes=offline_notes, on_embedder_failure=self._embedder_failed)

    def _refresh(self) -> None:
        mirror = self.mirror
        if mirror is not None:
            mirror.refresh()

    def _embedder_failed(self, exc: EmbedderUnavailable) -> None:
        """The model could not load after all (a broken install, no memory): keyword-only from now
        on, said in health. Items indexed meanwhile carry no vector; `memory reindex` adds them
        once the embedder works."""
        if self.embedder is None:
            return
        self.embedder_problem = f"{exc}; recall is keyword-only"
        log.warning("%s", self.embedder_problem)
        self.embedder, self.mirror = None, None
        if self.worker is not None:
            self.worker.embedder = None
        if self.query is not None:
            self.query.embedder, self.query.mirror = None, None

    def start(self) -> None:
        if self.worker is not None:
            self.worker.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        if self.worker is not None:
            self.worker.stop(timeout)
        if self.query is not None:
            self.query.close()

    def recall(self, query: object, k: object = None, *, kinds: object = ("knowledge", "event"),
               session_key: object = None, since: object = None, until: object = None) -> list[Hit]:
        if self.query is None:
            parse_kinds(kinds)  # the one error recall raises, enabled or not
            return []
        return self.query.recall(query, k, kinds=kinds, session_key=session_key, since=since, until=until)

    def health(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(the ``index`` section of ``health()``, problems in plain words)."""
        if not self.enabled:
            return {"enabled": False}, ()
        problems: list[str] = []
        if self.embedder_problem:
            problems.append(self.embedder_problem)
        w = self.worker
        assert w is not None
        st = w.stats
        report: dict[str, Any] = {
            "enabled": True,
            "embedder": embedder_id(self.embedder),
            "dim": None if self.embedder is None else self.embedder.dim,
            "vectors_in_memory": 0 if self.mirror is None else len(self.mirror),
            "vector_bytes": 0 if self.mirror is None else self.mirror.index.stats().nbytes,
            "indexer_running": w.running, "indexed": st.indexed, "removed": st.removed, "errors": st.errors,
            "last_error": st.last_error, "backfill_done": st.backfill_done,
            "offline_answers": 0 if self.query is None else self.query.offline_answers,
            "items": None, "lag_records": None, "lag_seconds": None, "other_embedder": None,
        }
        if self._online():
            try:
                c = self.store.index_counts()
            except StoreError as exc:
                report["error"] = str(exc)
            else:
                name = report["embedder"]
                lag_s = max(0.0, time.time() - c.oldest_queued_at) if c.oldest_queued_at is not None else 0.0
                other = sum(n for e, n in c.by_embedder.items() if e != name)
                report.update(items=c.items, lag_records=c.outbox, lag_seconds=round(lag_s, 3),
                              other_embedder=other)
                if c.outbox and lag_s > LAG_WARN_S:
                    problems.append(f"the recall index is {c.outbox} changes ({lag_s:.0f}s) behind the database")
                if other:
                    problems.append(f"{other} indexed items were embedded by another embedder than "
                                    f"{name or 'none'}; run `memory reindex`")
        if st.last_error is not None and (st.last_ok_at is None or (st.last_error_at or 0) > st.last_ok_at) \
                and st.errors >= 3 and self._online():
            problems.append(f"the recall indexer keeps failing: {st.last_error}")
        return report, tuple(problems)
