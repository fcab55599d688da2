"""The labelled recall set (tests/data): its integrity, and what the pure parts already achieve on it.

Keyword recall@5 is measured on a real FTS5 table and a real MariaDB FULLTEXT table built the way
the wiring will build them (``tests/index_backends.py``); vector recall with the hash embedder and,
when the ``embeddings`` extra is installed, with all-MiniLM-L6-v2 on the paraphrase set, where
meaning has to beat shared words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory.index._embed import Embedder, HashEmbedder, MiniLMEmbedder
from memory.index._extract import DEFAULT_FIELD_PATHS, event_text, parse_field_paths
from memory.index._fusion import fuse
from memory.index._text import index_terms, keyword_query
from memory.index._vectors import VectorFilter, VectorIndex, VectorRow

from .index_backends import Fts5Table, KeywordTable, MariaTable

DATA = Path(__file__).parent / "data"
CORPUS: dict[str, Any] = json.loads((DATA / "recall_corpus.json").read_text(encoding="utf-8"))
QUERIES: list[dict[str, Any]] = json.loads((DATA / "recall_queries.json").read_text(encoding="utf-8"))["queries"]
NOW = 1_750_000_000.0
K = 5
MODEL_MISSING = MiniLMEmbedder.unavailable_reason()


def of_type(kind: str) -> list[dict[str, Any]]:
    return [q for q in QUERIES if q["type"] == kind]


def documents(paths: tuple[tuple[str, ...], ...] = DEFAULT_FIELD_PATHS) -> list[dict[str, Any]]:
    """Every indexable item: notes (head = title, tags, headings) and events with text."""
    docs = []
    for n in CORPUS["notes"]:
        head = " ".join([n["title"], *n["tags"], *n["headings"]])
        docs.append({"kind": "knowledge", "id": n["key"], "head": head, "body": n["body"], "session_key": None,
                     "ts": NOW - 90 * 86400})
    for e in CORPUS["events"]:
        text = event_text(json.dumps(e["obs"]), paths)
        if text is not None:
            docs.append({"kind": "event", "id": e["id"], "head": "", "body": text, "session_key": e["session_key"],
                         "ts": NOW - e["age_s"]})
    return docs


def fill(table: KeywordTable, docs: list[dict[str, Any]]) -> KeywordTable:
    for d in docs:
        table.add(d["kind"], d["id"], d["head"], d["body"], d["session_key"], d["ts"])
    return table


def query_filters(q: dict[str, Any]) -> dict[str, Any]:
    return {"kinds": q.get("kinds"), "session_key": q.get("session_key"),
            "since": NOW - q["since_age_s"] if "since_age_s" in q else None,
            "until": NOW - q["until_age_s"] if "until_age_s" in q else None}


def recall_at_k(results: dict[str, list[str]], queries: list[dict[str, Any]]) -> float:
    found = sum(len(set(q["expected"]) & set(results[q["id"]][:K])) for q in queries)
    return found / sum(len(q["expected"]) for q in queries)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.integration)])
def table(request: pytest.FixtureRequest) -> Iterator[KeywordTable]:
    if request.param == "sqlite":
        yield fill(Fts5Table(), documents())
        return
    t = MariaTable(request.getfixturevalue("mysql_dsn"))
    try:
        yield fill(t, documents())
    finally:
        t.dispose()


# -- the data ------------------------------------------------------------------------------

def test_the_set_is_large_enough_and_consistent() -> None:
    keyword = of_type("keyword")
    assert len(keyword) >= 60
    for lang in ("en", "zh", "ko"):
        assert len([q for q in keyword if q["lang"] == lang]) >= 20, lang
    assert len({q["id"] for q in QUERIES}) == len(QUERIES)
    known = {f"{d['kind']}:{d['id']}" for d in documents(parse_field_paths(["text", "content", "message", "body",
                                                                            "payload.text"]))}
    for q in QUERIES:
        assert set(q["expected"]) <= known, q["id"]
        assert q["expected"] or q["type"] == "filtered", q["id"]
    assert "event:e-en-11" not in {f"{d['kind']}:{d['id']}" for d in documents()}   # no text, not indexed


def test_paraphrases_share_no_word_with_their_target() -> None:
    docs = {f"{d['kind']}:{d['id']}": d for d in documents()}
    for q in of_type("paraphrase"):
        kq = keyword_query(q["query"])
        assert kq is not None
        for item in q["expected"]:
            terms = set(index_terms(docs[item]["head"] + " " + docs[item]["body"]).split())
            assert not set(kq.exact) & terms and not any(t.startswith(p) for p in kq.prefix for t in terms), q["id"]


# -- keyword recall on the real backends ---------------------------------------------------

def test_keyword_recall_at_5_per_language(table: KeywordTable) -> None:
    keyword = of_type("keyword")
    results = {q["id"]: [f"{k}:{i}" for k, i in table.search(q["query"], K)] for q in keyword}
    misses = {q["id"]: (q["query"], results[q["id"]]) for q in keyword if not set(q["expected"]) <= set(results[q["id"]])}
    for lang in ("en", "zh", "ko"):
        r = recall_at_k(results, [q for q in keyword if q["lang"] == lang])
        assert r >= 0.9, (lang, r, misses)
    assert recall_at_k(results, keyword) >= 0.95, misses


def test_filtered_queries_return_exactly_the_expected_items(table: KeywordTable) -> None:
    for q in of_type("filtered"):
        if "event_text_fields" in q:
            continue
        got = {f"{k}:{i}" for k, i in table.search(q["query"], K, **query_filters(q))}
        assert got == set(q["expected"]), q["id"]


def test_event_text_fields_decide_what_is_indexed() -> None:
    (q,) = [q for q in of_type("filtered") if "event_text_fields" in q]
    default = fill(Fts5Table(), documents())
    custom = fill(Fts5Table(), documents(parse_field_paths(q["event_text_fields"])))
    assert {f"{k}:{i}" for k, i in default.search(q["query"], K)} == set()
    assert {f"{k}:{i}" for k, i in custom.search(q["query"], K)} == set(q["expected"])


# -- vectors and fusion --------------------------------------------------------------------

def vector_results(emb: Embedder, queries: list[dict[str, Any]]) -> dict[str, list[str]]:
    docs = documents()
    vecs = emb.embed([d["head"] + "\n" + d["body"] for d in docs])
    idx = VectorIndex(emb.dim)
    idx.upsert(VectorRow(d["kind"], d["id"], v, d["session_key"], d["ts"]) for d, v in zip(docs, vecs))
    qv = emb.embed([q["query"] for q in queries])
    return {q["id"]: [f"{h.kind}:{h.id}" for h in idx.search(v, K, VectorFilter())] for q, v in zip(queries, qv)}


def test_hash_vectors_find_most_keyword_answerable_queries() -> None:
    keyword = of_type("keyword")
    r = recall_at_k(vector_results(HashEmbedder(), keyword), keyword)
    assert r >= 0.85, r


def test_hybrid_fusion_is_at_least_as_good_as_keyword_alone() -> None:
    keyword = of_type("keyword")
    docs = documents()
    ts = {(d["kind"], d["id"]): d["ts"] for d in docs}
    table = fill(Fts5Table(), docs)
    vec = vector_results(HashEmbedder(), keyword)
    kw = {q["id"]: [f"{k}:{i}" for k, i in table.search(q["query"], 20)] for q in keyword}
    fused = {}
    for q in keyword:
        kw_keys = [tuple(x.split(":", 1)) for x in kw[q["id"]]]
        vec_keys = [(tuple(x.split(":", 1)), 1.0) for x in vec[q["id"]]]
        fused[q["id"]] = [f"{f.kind}:{f.id}" for f in fuse(kw_keys, vec_keys, now=NOW, ts=ts, limit=K)]  # type: ignore[arg-type]
    assert recall_at_k(fused, keyword) >= recall_at_k(kw, keyword)
    assert recall_at_k(fused, keyword) >= 0.95


@pytest.mark.skipif(MODEL_MISSING is not None, reason=f"embeddings extra not installed: {MODEL_MISSING}")
def test_model_vectors_beat_keywords_on_paraphrases() -> None:
    para = of_type("paraphrase")
    table = fill(Fts5Table(), documents())
    kw = {q["id"]: [f"{k}:{i}" for k, i in table.search(q["query"], K)] for q in para}
    model = recall_at_k(vector_results(MiniLMEmbedder(threads=1), para), para)
    hashed = recall_at_k(vector_results(HashEmbedder(), para), para)
    keyword = recall_at_k(kw, para)
    assert keyword <= 0.2 and model >= 0.8 and model > hashed, (keyword, hashed, model)
