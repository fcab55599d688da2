"""``recall``: one ranked list of notes and events for a query, online or not.

Sources of candidates, all filtered by kind, session and time before ranking:

* **the index** (database): keyword search (every term required; only when that finds nothing,
  items with two or more of the terms, then any term) and vector search over this process's
  mirror of the vectors;
* **fresh items**, not in the index yet: records still pending in this process's write queue
  (read-your-writes) and committed ones still waiting in the outbox. They are scored in-process
  (``local_score`` for keywords, the embedder for vectors) and merged into the two rankings:
  by similarity into the vector ranking, alternately into the keyword ranking (keyword scores of
  different engines are not comparable; alternating keeps each engine's order).
* **offline** (database unreachable, breaker open): notes from the vault files and events from
  the pending window, keyword only. Never a connect timeout per call: the breaker decides.

Ranks are fused by ``fuse`` (RRF × recency × salience). An indexed hit whose source is gone
(deleted note, forgotten event) is dropped when its text is fetched for the snippet.

**Graph boost** (``recall.graph_boost``, off by default; online only): the items within ``depth``
hops of the ``top`` fused hits (committed edges, either direction) gain ``score × (that hit's
score) / distance`` — the best such gain if several hits reach them, shown as ``Why.graph``. An
item already ranked keeps its score plus the gain; one found only through the graph joins with
the gain alone, if it is a note or event that exists and passes the query's kinds, session and
time filters (turns are hops, never results). Relative to the hit's own score, the boost means
the same on any backend and never lifts a neighbour above the hit that brought it (with ``score``
< 1). Off, the code path is skipped: results are exactly those without a graph.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._config import RecallConfig
from .._errors import StoreError
from ..store import SqlStore
from ..store._recall import KIND_EVENT, KIND_NOTE
from ._documents import Document, event_document, note_document
from ._embed import Embedder, EmbedderUnavailable
from ._extract import snippet
from ._fusion import Fused, Hit, Salience, Why, fuse, parse_kinds, parse_time_bound
from ._mirror import VectorMirror
from ._text import MAX_QUERY_CHARS, KeywordQuery, index_terms, keyword_query, local_score
from ._vectors import VectorFilter

log = logging.getLogger("memory.recall")
Key = tuple[str, str]
MAX_K = 1_000


@dataclasses.dataclass(frozen=True)
class Query:
    """recall()'s arguments, validated."""

    text: str
    keywords: KeywordQuery | None
    k: int
    kinds: frozenset[str]
    session_key: str | None
    since: float | None
    until: float | None

    @property
    def filter(self) -> VectorFilter:
        return VectorFilter(self.kinds, self.session_key, self.since, self.until)

    def admits(self, doc: Document) -> bool:
        if doc.kind not in self.kinds:
            return False
        if self.session_key is not None and doc.session_key is not None and doc.session_key != self.session_key:
            return False
        if self.since is not None or self.until is not None:
            if doc.ts is None:
                return False
            if (self.since is not None and doc.ts < self.since) or (self.until is not None and doc.ts > self.until):
                return False
        return True


def make_query(query: object, k: object, kinds: object, session_key: object, since: object, until: object,
               *, default_k: int, now: float) -> Query:
    """Validate the arguments. ``kinds`` is the one that raises (ValueError); a bad ``k`` means the
    default, a bad time bound is ignored with a warning (recall answers best effort)."""
    kind_set = parse_kinds(kinds)
    try:
        text = query if isinstance(query, str) else "" if query is None else str(query)
    except Exception:  # noqa: BLE001 - a hostile __str__
        text = ""
    text = text[:MAX_QUERY_CHARS].replace("\x00", " ")
    try:
        n = default_k if k is None or isinstance(k, bool) else int(k)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        n = default_k
    bounds: list[float | None] = []
    for name, value in (("since", since), ("until", until)):
        try:
            bounds.append(parse_time_bound(value, now=now))
        except Exception as exc:  # noqa: BLE001 - a bad bound (even one whose repr raises) is ignored
            log.warning("recall: %s ignored: %s", name, type(exc).__name__)
            bounds.append(None)
    sk = None if session_key is None else str(session_key)
    return Query(text, keyword_query(text), max(0, min(MAX_K, n)), kind_set, sk, bounds[0], bounds[1])


def _interleave(a: Sequence[Key], b: Sequence[Key]) -> list[Key]:
    out: dict[Key, None] = {}
    for i in range(max(len(a), len(b))):
        for seq in (a, b):
            if i < len(seq):
                out.setdefault(seq[i], None)
    return list(out)


class Recall:
    """The query side of recall for one service."""

    def __init__(self, store: SqlStore, config: RecallConfig, embedder: Embedder | None,
                 mirror: VectorMirror | None, *, pending_events: Callable[[], Iterable[tuple[Any, ...]]],
                 online: Callable[[], bool], offline_notes: Callable[[], Iterable[Any]],
                 salience: Salience | None = None, clock: Callable[[], float] = time.time,
                 on_embedder_failure: Callable[[EmbedderUnavailable], None] | None = None) -> None:
        self.store, self.config, self.embedder, self.mirror = store, config, embedder, mirror
        self._pending_events, self._online, self._offline_notes = pending_events, online, offline_notes
        self.salience = salience
        self._clock = clock
        self._on_embedder_failure = on_embedder_failure
        self._executor: ThreadPoolExecutor | None = None
        self.params = config.fusion_params()
        self.paths = config.event_field_paths()
        if config.min_similarity is not None:
            self.min_similarity: float | None = config.min_similarity
        else:  # hashed n-grams share some features by chance; a trained model's floor is lower
            self.min_similarity = 0.1 if embedder is not None and embedder.name.startswith("hash") else 0.0
        self.offline_answers = 0
        self.last_offline_reason: str | None = None
        #: The graph's walk for the boost (set by the service when ``graph.enabled``):
        #: ``(ids, depth, limit) -> {id: [(neighbour, distance), ...]}``; raises StoreError.
        self.neighbours: Callable[[Sequence[str], int, int], dict[str, list[tuple[str, int]]]] | None = None
        self.boost_errors = 0

    # -- fresh items ---------------------------------------------------------------------------
    def _pending_docs(self, q: Query) -> list[Document]:
        if KIND_EVENT not in q.kinds or self.config.max_fresh <= 0:
            return []
        rows = list(self._pending_events())[-self.config.max_fresh:]
        docs = (event_document(r[0], r[2], r[1], r[3], self.paths) for r in reversed(rows))
        return [d for d in docs if d is not None and q.admits(d)]

    def _outbox_docs(self, q: Query) -> list[Document]:
        if self.config.max_fresh <= 0:
            return []
        events, notes = self.store.fresh_items(self.config.max_fresh)
        docs: list[Document | None] = []
        if KIND_EVENT in q.kinds:
            docs += [event_document(r[0], r[1], r[2], r[3], self.paths) for r in events]
        if KIND_NOTE in q.kinds:
            docs += [note_document(r[0], r[1], r[2], r[3], r[4]) for r in notes]
        return [d for d in docs if d is not None and q.admits(d)]

    def _local_keyword(self, q: Query, docs: Sequence[Document]) -> list[Key]:
        if q.keywords is None:
            return []
        hw = self.config.head_weight
        scored = [(local_score(q.keywords, d.terms(hw)), d.key) for d in docs]
        return [key for s, key in sorted(((s, key) for s, key in scored if s > 0), key=lambda x: (-x[0], x[1]))]

    def _local_vector(self, qvec: Any, docs: Sequence[Document]) -> list[tuple[Key, float]]:
        embedder = self.embedder
        if qvec is None or not docs or embedder is None:
            return []
        try:
            sims = embedder.embed([d.embed_text for d in docs]) @ qvec
        except EmbedderUnavailable:
            return []
        floor = -math.inf if self.min_similarity is None else self.min_similarity
        return [(d.key, float(s)) for d, s in zip(docs, sims) if math.isfinite(float(s)) and float(s) >= floor]

    # -- the query -------------------------------------------------------------------------------
    def recall(self, query: object, k: object = None, *, kinds: object = ("knowledge", "event"),
               session_key: object = None, since: object = None, until: object = None) -> list[Hit]:
        now = self._clock()
        q = make_query(query, k, kinds, session_key, since, until, default_k=self.config.default_k, now=now)
        if q.k == 0 or (q.keywords is None and not q.text.strip()):
            return []
        try:
            if self._online():
                return self._online_recall(q, now)
            self.last_offline_reason = "database unavailable (breaker open)"
        except StoreError as exc:
            self.last_offline_reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - never fail the caller; answer from what is local
            log.warning("recall failed, answering from local data: %s", exc)
            self.last_offline_reason = f"{type(exc).__name__}: {exc}"
        self.offline_answers += 1
        try:
            return self._offline_recall(q, now)
        except Exception as exc:  # noqa: BLE001
            log.warning("offline recall failed: %s", exc)
            return []

    def _query_vector(self, q: Query) -> Any:
        embedder = self.embedder
        if embedder is None or not q.text.strip():
            return None
        try:
            vec = embedder.embed([q.text])[0]
        except EmbedderUnavailable as exc:
            if self._on_embedder_failure is not None:
                self._on_embedder_failure(exc)
            self.embedder = None
            return None
        return vec if float((vec * vec).sum()) > 0 else None

    def _online_recall(self, q: Query, now: float) -> list[Hit]:
        # Read in the order a record moves: pending window, then outbox, then index. A record that
        # leaves one place during the recall is then found in the next (it enters it first: a
        # commit writes the outbox row, and the indexer deletes it only once the index holds it).
        # The vector search (CPU, NumPy releases the GIL) overlaps the database round trips below.
        qvec = self._query_vector(q)
        mirror = self.mirror
        c = max(self.config.candidates, q.k)
        vec_future = None
        if qvec is not None and mirror is not None:
            vec_future = self._pool().submit(mirror.search, qvec, c * 2, q.filter, self.min_similarity)
        pending = self._pending_docs(q)
        fresh = {d.key: d for d in self._outbox_docs(q)}
        fresh.update({d.key: d for d in pending})  # pending is newer than the outbox
        ts: dict[Key, float | None] = {}
        kw_db: list[Key] = []
        if q.keywords is not None:
            filters = dict(kinds=sorted(q.kinds), session_key=q.session_key, since=q.since, until=q.until)
            found = self.store.keyword_search(self._match(q.keywords, "all"), c, **filters)  # type: ignore[arg-type]
            # Widen only when no item holds every term: first to items with at least two of the
            # terms, then to any term. Ranking partial matches of common words is costly (every
            # match is scored: 7-30 ms on SQLite, hundreds of ms on MariaDB at 100k items), and
            # fused with vectors they buried an item holding every word. Near misses still come
            # from the vector side.
            if not found and len(q.keywords.terms) > 1:
                pairs = self._match(q.keywords, "pairs")
                if pairs is not None:
                    found = self.store.keyword_search(pairs, c, **filters)  # type: ignore[arg-type]
                if not found:
                    found = self.store.keyword_search(self._match(q.keywords, "any"), c,  # type: ignore[arg-type]
                                                      **filters)
            for kind, item_id, t in found:
                # A fresh item's index row (if any) is older than its fresh copy: the copy decides.
                if (kind, item_id) not in ts and (kind, item_id) not in fresh:
                    kw_db.append((kind, item_id))
                    ts[(kind, item_id)] = t
            kw_db = kw_db[:c]
        vec: list[tuple[Key, float]] = []
        if vec_future is not None:
            for h in vec_future.result():
                if (h.kind, h.id) not in fresh:
                    vec.append(((h.kind, h.id), h.score))
        docs = list(fresh.values())
        keyword = _interleave(kw_db, self._local_keyword(q, docs))
        if docs:
            vec = sorted([*vec, *self._local_vector(qvec, docs)], key=lambda x: (-x[1], x[0]))
        vec = vec[:c]
        for d in docs:
            ts[d.key] = d.ts
        if mirror is not None:
            for key, _ in vec:
                ts.setdefault(key, mirror.index.ts_of(key))
        fused = fuse(keyword, vec, now=now, ts=ts, params=self.params, salience=self.salience, limit=q.k * 2 + 10)
        if self.config.graph_boost.enabled and self.neighbours is not None and fused:
            fused, fresh = self._graph_boost(q, fused, fresh)
        return self._materialize(q, fused, fresh)

    def _graph_boost(self, q: Query, fused: Sequence[Fused],
                     fresh: dict[Key, Document]) -> tuple[Sequence[Fused], dict[Key, Document]]:
        """``fused`` with the graph's gains added (see the module docstring) and, for items that
        join only through the graph, their documents (checked against the query's filters)."""
        boost = self.config.graph_boost
        top = list(fused[:boost.top])
        assert self.neighbours is not None
        try:
            walks = self.neighbours([f.id for f in top], boost.depth, q.k * 2 + 10)
        except StoreError as exc:  # the boost is a bonus: answer without it
            self.boost_errors += 1
            log.warning("recall: graph boost skipped: %s", exc)
            return fused, fresh
        gains: dict[str, float] = {}
        for f in top:
            for node, distance in walks.get(f.id, ()):
                gain = boost.score * f.score / max(1, distance)
                if gain > gains.get(node, 0.0):
                    gains[node] = gain
        if not gains:
            return fused, fresh
        out: list[Fused] = []
        ranked: set[str] = set()
        for f in fused:
            gain = gains.get(f.id, 0.0)
            ranked.add(f.id)
            out.append(dataclasses.replace(f, score=f.score + gain, why=dataclasses.replace(f.why, graph=gain))
                       if gain > 0 else f)
        extra = dict(fresh)
        joining = [node for node in gains if node not in ranked]
        by_id = {key[1]: doc for key, doc in fresh.items()}
        need = [node for node in joining if node not in by_id]
        events = self.store.event_sources(need) if KIND_EVENT in q.kinds and need else {}
        notes = self.store.note_sources(need) if KIND_NOTE in q.kinds and need else {}
        for node in joining:
            doc = by_id.get(node)
            if doc is None and node in notes:
                doc = note_document(node, *notes[node])
            elif doc is None and node in events:
                e = events[node]
                doc = event_document(node, e[0], e[1], e[2], self.paths)
            if doc is None or not q.admits(doc):
                continue  # a turn, a gone item, or one the query's filters exclude
            extra[doc.key] = doc
            g = gains[node]
            out.append(Fused(doc.kind, node, g, Why(None, 0.0, None, 0.0, None, 1.0, 1.0, g)))
        out.sort(key=lambda f: (-f.score, f.kind, f.id))
        return out, extra

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memory-recall")
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _match(self, kq: KeywordQuery, mode: str) -> str | None:
        """The dialect's query string: every term (``all``), two or more (``pairs``), or ``any``."""
        sqlite = self.store.dialect == "sqlite"
        if mode == "pairs":
            return kq.fts5_pairs() if sqlite else kq.boolean_pairs()
        return kq.fts5(mode == "all") if sqlite else kq.boolean(mode == "all")

    def _materialize(self, q: Query, fused: Sequence[Fused], fresh: dict[Key, Document]) -> list[Hit]:
        need = [f for f in fused if (f.kind, f.id) not in fresh]
        events = self.store.event_sources([f.id for f in need if f.kind == KIND_EVENT])
        notes = self.store.note_sources([f.id for f in need if f.kind == KIND_NOTE])
        hits: list[Hit] = []
        for f in fused:
            doc = fresh.get((f.kind, f.id))
            if doc is None and f.kind == KIND_EVENT and f.id in events:
                e = events[f.id]
                doc = event_document(f.id, e[0], e[1], e[2], self.paths)
            elif doc is None and f.kind == KIND_NOTE and f.id in notes:
                doc = note_document(f.id, *notes[f.id])
            if doc is None:
                continue  # gone since it was indexed: never answer with a deleted item
            hits.append(self._hit(q, f, doc))
            if len(hits) >= q.k:
                break
        return hits

    def _hit(self, q: Query, f: Fused, doc: Document) -> Hit:
        return Hit(f.kind, f.id, f.score, doc.title, snippet(doc.text, q.keywords), doc.session_key, doc.ts, f.why)

    def _offline_recall(self, q: Query, now: float) -> list[Hit]:
        docs: list[Document] = []
        if KIND_NOTE in q.kinds:
            for note in self._offline_notes():
                d = note_document(note.key, note.title, note.content, _json_list(note.tags), _json_list(note.headings))
                if q.admits(d):
                    docs.append(d)
        docs += self._pending_docs(q)
        by_key = {d.key: d for d in docs}
        keyword = self._local_keyword(q, list(by_key.values()))
        fused = fuse(keyword, [], now=now, ts={k: d.ts for k, d in by_key.items()}, params=self.params,
                     salience=self.salience, limit=q.k)
        return [self._hit(q, f, by_key[(f.kind, f.id)]) for f in fused]


def _json_list(items: Iterable[str]) -> str:
    import json

    return json.dumps(list(items))
