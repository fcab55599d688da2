"""Recall through the service at scale: latency, hit rate, indexing, reindex, append cost, memory.

    .venv/bin/python bench/bench_recall.py [--quick] [--no-mysql] [--no-minilm]
    ./dev bench --only recall [--quick]

One run, every ratio against a baseline measured in the same run, on each backend (a SQLite file
and, if reachable, MariaDB at 127.0.0.1:3306 in a database created and dropped here):

* a synthetic corpus (seeded, deterministic) of notes (vault files + ``vault_sync``) and events
  (``append_event`` with the writer running), in English, Chinese and Korean, plus the labelled
  set of ``tests/data`` mixed in; the vocabulary leaves out every labelled query word, so each
  labelled query keeps exactly its labelled answers among the distractors;
* the background indexer draining that outbox (``worker.loop_once()`` in a loop), then its
  first-start backfill sweep; the vector mirror's size and a fresh process's load of it;
* ``MemoryService.recall`` p50/p95 (hybrid with the ``hash`` embedder, and keyword-only through a
  second service with ``embedder: none``) and hit@10 of known-item queries (a name and one or two
  facts of one item's sentence; a query that more than 10 items contain entirely is not counted) and of the labelled
  set; baselines ``search_knowledge`` (the LIKE scan, notes only) and brute-force pure-Python
  cosine over the same vectors;
* a full ``Reindexer`` run over a separate vault; ``append_event`` latency with a busy indexer
  against a service with ``recall: {enabled: false}``, interleaved rounds;
* with the ``embeddings`` extra installed: the same with ``embedder: minilm`` on a smaller corpus
  (SQLite only).

Timings are wall clock on a shared machine: the load average is printed with the tables.

The corpus and queries are built in ``recall_corpus``, the tables written by ``recall_tables``;
this module measures.
"""

from __future__ import annotations

import array
import dataclasses
import gc
import heapq
import json
import logging
import operator
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import MYSQL_URL, mysql_admin, mysql_available, pct, service_cfg  # noqa: E402
from recall_corpus import (K, Item, Query, Vocab, known_item_queries, labelled, make_corpus,  # noqa: E402
                           vocabulary, write_vault)
from recall_tables import tables  # noqa: E402  (re-exported: ./dev bench calls bench_recall.tables)
from recall_vocab import EN  # noqa: E402

from memory import MemoryService  # noqa: E402
from memory.index._documents import embedder_id, event_document, note_document  # noqa: E402
from memory.index._indexer import Reindexer  # noqa: E402
from memory.index._mirror import VectorMirror  # noqa: E402
from memory.index._vectors import VectorFilter  # noqa: E402

__all__ = ["Sizes", "main", "run", "tables"]


@dataclasses.dataclass(frozen=True)
class Sizes:
    items: int  # half notes, half events
    reindex_notes: int
    queries_per_lang: int  # known-item queries per language
    like_queries: int
    cosine_queries: int
    append_rounds: int
    appends_per_round: int
    backlog: int  # events queued for the indexer before the append comparison
    minilm_items: int
    minilm_queries: int
    minilm_probe: int  # texts timed to measure the model's throughput
    minilm_budget_s: float  # the item count shrinks so that embedding them takes about this long

    @staticmethod
    def full() -> Sizes:
        return Sizes(100_000, 10_000, 100, 30, 3, 10, 1_000, 20_000, 10_000, 100, 200, 120.0)

    @staticmethod
    def quick() -> Sizes:
        return Sizes(4_000, 500, 15, 6, 1, 4, 250, 8_000, 200, 12, 40, 5.0)



# -- backends and services ----------------------------------------------------------------------

@contextmanager
def database(backend: str, tag: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'{tag}.db'}"
        return
    name = f"bench_recall_{os.getpid()}_{tag}"
    mysql_admin(f"DROP DATABASE IF EXISTS {name}")
    mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield f"{MYSQL_URL}/{name}"
    finally:
        mysql_admin(f"DROP DATABASE IF EXISTS {name}")


def open_service(dsn: str, root: Path, vault: Path, **recall: Any) -> MemoryService:
    """A service whose indexer thread is not running (the benchmark drives ``loop_once``)."""
    cfg = service_cfg(dsn, root)
    cfg["vault"] = {"root_path": str(vault), "watch": False}
    cfg["recall"] = {"indexer_interval_ms": 3_600_000, **recall}
    svc = MemoryService.from_config(cfg, start_writer=False, start_vault=False)
    svc.initialize()
    return svc


def note(msg: str) -> None:
    """Progress on stderr (stdout carries only the tables)."""
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def load(svc: MemoryService, vault: Path, items: Sequence[Item], extra_events: Sequence[dict[str, Any]] = ()
         ) -> tuple[dict[str, str], dict[str, float]]:
    """Events through the writer, notes by vault sync. Returns (event ref -> id, timings)."""
    svc.queue.start()
    ids: dict[str, str] = {}
    t = time.perf_counter()
    for it in items:
        if it.kind == "event":
            ids[it.ref] = svc.append_event({"type": "message", "text": it.body, "user": it.session_key},
                                           it.session_key).event_id
    for e in extra_events:
        ids[e["id"]] = svc.append_event(e["obs"], e["session_key"]).event_id
    assert svc.flush(600), "writer did not drain"
    events_s = time.perf_counter() - t
    (vault / "metadata.json").unlink(missing_ok=True)  # a cache of another backend's sync
    t = time.perf_counter()
    report = svc.vault_sync()
    assert report.database_ok and not report.invalid, report
    return ids, {"events_s": events_s, "events": len(ids), "notes_s": time.perf_counter() - t, "notes": report.new}


def drain(svc: MemoryService) -> dict[str, float]:
    """Time the indexer emptying the outbox, then its first-start backfill sweep."""
    w, store = svc.recall_index.worker, svc.store
    assert w is not None
    indexed0, checks, t0 = w.stats.indexed, 0.0, time.perf_counter()
    while True:
        w.loop_once()
        c = time.perf_counter()
        empty = not store.outbox_batch(1)
        checks += time.perf_counter() - c
        if empty:
            break
    drain_s = time.perf_counter() - t0 - checks
    indexed = w.stats.indexed - indexed0
    t = time.perf_counter()
    while not w.stats.backfill_done:
        w.loop_once()
    return {"drain_s": drain_s, "indexed": indexed, "backfill_s": time.perf_counter() - t}


def cpu_only_rate(svc: MemoryService, items: Sequence[Item]) -> float:
    """Items/s of the indexer's CPU work alone (documents, digests, terms, embedding), no database."""
    emb, hw = svc.recall_index.embedder, svc.config.recall.head_weight
    sample = list(items[:10_000])
    t = time.perf_counter()
    for i in range(0, len(sample), 256):
        docs = [event_document(it.ref, it.session_key, 0.0, json.dumps({"text": it.body})) if it.kind == "event"
                else note_document(it.ref, it.title, it.body, json.dumps(list(it.tags)), "[]")
                for it in sample[i:i + 256]]
        for d in docs:
            assert d is not None
            d.digest(hw), d.terms(hw)
        if emb is not None:
            emb.embed([d.embed_text for d in docs if d is not None])
    return len(sample) / (time.perf_counter() - t)


@dataclasses.dataclass(frozen=True)
class QueryRun:
    lat: list[float]  # ms
    hits: dict[str, list[bool]]  # "source:lang" -> every expected item in the top K, per counted query
    got: dict[str, list[str]]  # query text -> the top K
    langs: list[str]  # of each latency


def run_queries(fn: Callable[[str], list[str]], queries: Sequence[Query], warm: int = 10) -> QueryRun:
    for q in queries[:warm]:
        fn(q.text)
    run = QueryRun([], {}, {}, [])
    for q in queries:
        t = time.perf_counter()
        got = fn(q.text)[:K]
        run.lat.append((time.perf_counter() - t) * 1000)
        run.got[q.text] = got
        run.langs.append(q.lang)
        if not q.ambiguous:
            run.hits.setdefault(f"{q.source}:{q.lang}", []).append(set(q.expected) <= set(got))
    return run


def misses(queries: Sequence[Query], hybrid: QueryRun, keyword: QueryRun) -> list[str]:
    """Counted queries hybrid recall missed, with the expected items' ranks in both runs."""
    def ranks(got: list[str], q: Query) -> str:
        return ",".join(str(got.index(e) + 1) if e in got else "-" for e in q.expected)

    return [f"{q.source} {q.lang} {q.text!r}: hybrid rank {ranks(hybrid.got[q.text], q)}, keyword-only rank "
            f"{ranks(keyword.got[q.text], q)}" for q in queries
            if not q.ambiguous and not set(q.expected) <= set(hybrid.got[q.text])]


def with_ids(queries: Sequence[Query], ids: dict[str, str]) -> list[Query]:
    """Event targets are named by position (or label) until ``append_event`` gave them an id."""
    return [dataclasses.replace(q, expected=tuple(f"event:{ids[e[6:]]}" if e.startswith("event:") else e
                                                  for e in q.expected)) for q in queries]


def recall_fn(svc: MemoryService, **kw: Any) -> Callable[[str], list[str]]:
    return lambda text: [f"{h.kind}:{h.id}" for h in svc.recall(text, K, **kw)]


# -- baselines ----------------------------------------------------------------------------------

def python_cosine(svc: MemoryService, queries: Sequence[Query]) -> dict[str, float]:
    """Brute force over the stored vectors in pure Python; counts how much of the mirror's exact
    top 10 it finds (float64 sums against float32: a near tie at rank 10 may swap)."""
    emb, mirror = svc.recall_index.embedder, svc.recall_index.mirror
    assert emb is not None and mirror is not None
    name, rows, after = str(embedder_id(emb)), [], 0
    while True:
        page = svc.store.index_vectors(name, after, 5_000)
        rows += [((r[1], r[2]), array.array("f", bytes(r[5]))) for r in page]
        if len(page) < 5_000:
            break
        after = int(page[-1][0])
    lat, agree = [], 0
    for q in queries:
        qv = emb.embed([q.text])[0].tolist()
        t = time.perf_counter()
        top = heapq.nlargest(K, ((sum(map(operator.mul, v, qv)), key) for key, v in rows))
        lat.append((time.perf_counter() - t) * 1000)
        exact = {(h.kind, h.id) for h in mirror.search(emb.embed([q.text])[0], K, VectorFilter(), None)}
        agree += len({key for _, key in top} & exact)
    return {"p50": pct(lat, 50), "max": max(lat), "n": len(queries), "items": len(rows), "agree": agree}


def mirror_reload(svc: MemoryService) -> dict[str, float]:
    """What a newly started process pays: a fresh mirror loading every vector."""
    emb = svc.recall_index.embedder
    assert emb is not None
    gc.collect()
    r0, t = rss(), time.perf_counter()
    m = VectorMirror(svc.store, str(embedder_id(emb)), emb.dim)
    m.refresh()
    out = {"s": time.perf_counter() - t, "rss": rss() - r0, "n": len(m)}
    del m
    gc.collect()
    return out


# -- append latency with a busy indexer -----------------------------------------------------------

def paced_appends(svc: MemoryService, n: int, seq: int) -> list[float]:
    """``append_event`` latencies (µs), one call every ~0.25 ms like a busy chat core."""
    out = []
    for i in range(n):
        obs = {"type": "message", "text": f"paced message {seq}-{i}: 오늘 커피 마셨어요 and went to 北京", "user": "u"}
        t = time.perf_counter_ns()
        svc.append_event(obs, "chat:paced")
        out.append((time.perf_counter_ns() - t) / 1000)
        time.sleep(0.0002)
    return out


def append_on_off(svc_on: MemoryService, svc_off: MemoryService, sizes: Sizes) -> dict[str, Any]:
    w = svc_on.recall_index.worker
    assert w is not None
    for i in range(sizes.backlog):  # give the indexer real work: fresh events to embed
        svc_on.append_event({"type": "message", "text": f"backlog event {i} about the {EN['obj'][i % 30]} in "
                                                         f"{EN['city'][i % 25]}"}, f"chat:backlog-{i % 50}")
    assert svc_on.flush(600)
    busy, idle, stop = threading.Event(), threading.Event(), threading.Event()
    idle.set()
    done = {"items": 0, "idle_batches": 0}

    def drive() -> None:
        while not stop.is_set():
            if not busy.wait(0.02):
                continue
            idle.clear()
            try:
                n = w.loop_once()
            finally:
                idle.set()
            done["items"] += n
            done["idle_batches"] += n == 0

    th = threading.Thread(target=drive, name="bench-indexer", daemon=True)
    th.start()
    on: list[float] = []
    off: list[float] = []
    try:
        for r in range(sizes.append_rounds):
            for mode in (("on", "off") if r % 2 == 0 else ("off", "on")):
                if mode == "on":
                    busy.set()
                    time.sleep(0.05)  # let it get into a batch
                    on += paced_appends(svc_on, sizes.appends_per_round, r)
                    busy.clear()
                    idle.wait()
                else:
                    off += paced_appends(svc_off, sizes.appends_per_round, r)
    finally:
        stop.set()
        busy.set()
        th.join()
    return {"on": on, "off": off, **done}


# -- one backend --------------------------------------------------------------------------------

def run_backend(backend: str, sizes: Sizes, corpus: Sequence[Item], vault: Path, rvault: Path,
                extra_events: Sequence[dict[str, Any]], queries: list[Query], cosine: bool) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, database(backend, "main", Path(d)) as dsn:
        root = Path(d)
        svc = open_service(dsn, root / "on", vault)
        ids, res["load"] = load(svc, vault, corpus, extra_events)
        note(f"{backend}: loaded {res['load']}")
        qs = with_ids(queries, ids)
        res["ambiguous"] = sum(q.ambiguous for q in qs)
        gc.collect()
        rss0 = rss()
        res["index"] = drain(svc)
        res["index"]["rss_delta"] = rss() - rss0
        note(f"{backend}: indexed {res['index']}")
        res["index"]["cpu_only"] = cpu_only_rate(svc, corpus)
        h = svc.health()["index"]
        res["index"].update(vector_bytes=h["vector_bytes"], vectors=h["vectors_in_memory"], items=h["items"])
        res["mirror"] = mirror_reload(svc)
        res["hybrid"] = run_queries(recall_fn(svc), qs)
        note(f"{backend}: {len(qs)} hybrid queries done")
        res["session"] = run_queries(recall_fn(svc, session_key="chat:user-007"), qs).lat
        kw = open_service(dsn, root / "kw", vault, embedder="none")
        try:
            res["keyword"] = run_queries(recall_fn(kw), qs)
        finally:
            kw.close()
        res["misses"] = misses(qs, res["hybrid"], res["keyword"])
        # search_knowledge finds notes only: its hit rate is taken over queries for a note.
        notes_qs = [q for q in qs if q.expected[0].startswith("knowledge:")]
        like_qs = notes_qs[:: max(1, len(notes_qs) // sizes.like_queries)][: sizes.like_queries]
        assert not svc.vault.db_pending  # the database path of search_knowledge, not the file scan
        res["like"] = run_queries(lambda t: [f"knowledge:{n.key}" for n in svc.search_knowledge(t, K)], like_qs, 2)
        res["like_n"] = len(like_qs)
        if cosine:
            res["cosine"] = python_cosine(svc, qs[:: max(1, len(qs) // sizes.cosine_queries)][: sizes.cosine_queries])
        note(f"{backend}: baselines done; append comparison")
        off = open_service(dsn, root / "off", vault, enabled=False)
        off.queue.start()
        try:
            res["append"] = append_on_off(svc, off, sizes)
        finally:
            off.close()
            svc.close()
    with tempfile.TemporaryDirectory() as d, database(backend, "reindex", Path(d)) as dsn:
        svc = open_service(dsn, Path(d), rvault)
        try:
            res["rload"] = load(svc, rvault, [])[1]
            res["rdrain"] = drain(svc)
            w = svc.recall_index.worker
            assert w is not None
            r = Reindexer(svc.store, svc.recall_index.embedder, w.settings, full=True)
            t, n, step = time.perf_counter(), 0, r.step()
            while not step.finished:
                n += step.outcome.indexed
                step = r.step()
            res["reindex"] = {"s": time.perf_counter() - t, "indexed": n}
            note(f"{backend}: reindex {res['reindex']}")
            r.clear()
        finally:
            svc.close()
    return res


def run_minilm(sizes: Sizes, vocab: Vocab) -> dict[str, Any]:
    """The model embedder on SQLite: throughput, the indexer, recall latency; then the same with
    torch limited to one thread (its default is every core, which collapses under CPU contention)."""
    from memory.index._embed import MiniLMEmbedder

    why = MiniLMEmbedder.unavailable_reason()
    if why is not None:
        return {"skipped": why}
    import torch

    res: dict[str, Any] = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as d, database("sqlite", "minilm", Path(d)) as dsn:
        vault = Path(d) / "vault"
        svc = open_service(dsn, Path(d), vault, embedder="minilm")
        try:
            emb = svc.recall_index.embedder
            if emb is None:
                return {"skipped": svc.recall_index.embedder_problem}
            t = time.perf_counter()
            emb.embed(["warm up"])
            res["load_s"] = time.perf_counter() - t
            probe = make_corpus(vocab, sizes.minilm_probe // 2, sizes.minilm_probe // 2, seed=10)
            texts = [i.title + "\n" + i.body if i.title else i.body for i in probe]
            t = time.perf_counter()
            emb.embed(texts)
            res["embed_rate"] = len(texts) / (time.perf_counter() - t)
            # Bounded run time: on a loaded machine the model can be 10x slower than usual.
            n = min(sizes.minilm_items, max(200, int(res["embed_rate"] * sizes.minilm_budget_s) // 100 * 100))
            res["n"], res["reduced"] = n, n < sizes.minilm_items
            note(f"minilm: {res['embed_rate']:.0f} texts/s, {n} items")
            corpus = make_corpus(vocab, n // 2, n - n // 2, seed=11, prefix="m")
            write_vault(vault, [i for i in corpus if i.kind == "knowledge"])
            qs = known_item_queries(corpus, sizes.minilm_queries // 3 + 1, seed=12)
            ids = load(svc, vault, corpus)[0]
            res["index"] = drain(svc)
            qs = with_ids(qs, ids)
            res["hybrid"] = run_queries(recall_fn(svc), qs)
            torch.set_num_threads(1)
            try:
                t = time.perf_counter()
                emb.embed(texts)
                res["embed_rate_1"] = len(texts) / (time.perf_counter() - t)
                res["hybrid_1"] = run_queries(recall_fn(svc), qs).lat
            finally:
                torch.set_num_threads(res["threads"])
        finally:
            svc.close()
    return res


def run(backends: Sequence[str], sizes: Sizes, minilm: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    out: dict[str, Any] = {"sizes": sizes, "load_before": os.getloadavg(), "backends": {}}
    l_notes, l_heads, l_events, l_queries = labelled()
    banned = {w for q in l_queries for w in q["query"].split()}
    vocab = vocabulary(banned)
    half = sizes.items // 2
    corpus = make_corpus(vocab, half, sizes.items - half, seed=7)
    queries = known_item_queries(corpus, sizes.queries_per_lang, seed=8)
    queries += [Query(q["lang"], q["query"], tuple(q["expected"]), False, "labelled") for q in l_queries]
    note(f"corpus: {len(corpus):,} items, {len(queries)} queries")
    with tempfile.TemporaryDirectory() as d:
        vault, rvault = Path(d) / "vault", Path(d) / "rvault"
        write_vault(vault, [i for i in corpus if i.kind == "knowledge"])
        write_vault(vault, l_notes, l_heads)
        write_vault(rvault, [i for i in make_corpus(vocab, sizes.reindex_notes, 0, seed=9, prefix="r")])
        for i, b in enumerate(backends):
            out["backends"][b] = run_backend(b, sizes, corpus, vault, rvault, l_events, queries, cosine=i == 0)
        shutil.rmtree(vault, ignore_errors=True)
    out["minilm"] = run_minilm(sizes, vocab) if minilm else {"skipped": "--no-minilm"}
    out["elapsed"] = time.perf_counter() - t0
    out["load_after"] = os.getloadavg()
    return out




def main() -> None:
    import argparse
    import platform

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run, < 1 minute)")
    ap.add_argument("--no-mysql", action="store_true")
    ap.add_argument("--no-minilm", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    backends = ["sqlite"] + (["mariadb"] if not args.no_mysql and mysql_available() else [])
    print(f"# recall benchmark — Python {platform.python_version()}, {platform.machine()}, "
          f"backends: {', '.join(backends)}\n", flush=True)
    print(tables(run(backends, Sizes.quick() if args.quick else Sizes.full(), minilm=not args.no_minilm)))


if __name__ == "__main__":
    main()
