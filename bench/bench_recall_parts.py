"""Benchmark of recall's self-contained parts: terms, hash embedder, vector search, keyword search.

    .venv/bin/python bench/bench_recall_parts.py [--n 100000] [--dims 256,384] [--no-ann] [--mysql]

What it measures (one run, ratios against baselines measured in the same run):

* text: ``index_terms`` throughput and ``keyword_query`` / ``snippet`` latency;
* the hash embedder: batch throughput and one-query latency;
* vector search at ``n`` items for each dimension (256 = the hash embedder's default, 384 =
  all-MiniLM-L6-v2): exact NumPy (``VectorIndex``: build, RSS, p50/p95 unfiltered and with a
  1 % and a 50 % filter) against brute-force Python cosine (the baseline) and an HNSW graph
  (hnswlib, if installed: build, RSS, p50/p95, recall@10 against exact, and a 1 % filter via
  its filter callback). Vectors are hash embeddings of a synthetic mixed English / Chinese /
  Korean corpus, so they have the structure of real index contents (random Gaussian vectors
  are a pathological case for graph indexes and would flatter exact search);
* keyword search on SQLite FTS5 over the same corpus (and MariaDB FULLTEXT with ``--mysql``):
  English two-word queries (any term / all terms), Chinese (bigram) and one-character (prefix)
  queries, p50/p95. The English words are drawn from one item, so they are often the corpus's
  most frequent words: a pessimistic case for an any-term query, which must rank every match.

Timing is wall clock on a shared machine; the load average is printed with the results. A full
run takes about four minutes on 2 cores; ``--only vectors --dims 256`` (about one minute) and the
other parts can be run one at a time.
"""

from __future__ import annotations

import argparse
import array
import gc
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from memory.index._embed import HashEmbedder  # noqa: E402
from memory.index._extract import snippet  # noqa: E402
from memory.index._text import index_terms, keyword_query  # noqa: E402
from memory.index._vectors import VectorFilter, VectorIndex, VectorRow  # noqa: E402

HANZI = ("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过"
         "家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从咖啡茶早晚喝吃饭")
HANGUL = "가나다라마바사아자차카타파하거너더러머버서어저처커터퍼허고노도로모보소오조초코토포호구누두루무부수우주추쿠투푸후기니디리미비시이지치키티피히를은는이가에서"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def corpus(n: int, seed: int = 7) -> list[str]:
    """Mixed-language synthetic texts with Zipf-like word frequencies (60 % en, 20 % zh, 20 % ko)."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(20_000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    out = []
    for i in range(n):
        r = i % 5
        if r < 3:
            out.append(" ".join(rng.choices(vocab, weights, k=rng.randint(6, 40))))
        elif r == 3:
            out.append("，".join("".join(rng.choices(HANZI, k=rng.randint(4, 14))) for _ in range(rng.randint(1, 4))))
        else:
            out.append(" ".join("".join(rng.choices(HANGUL, k=rng.randint(2, 4))) for _ in range(rng.randint(3, 12))))
    return out


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def bench_text(texts: list[str]) -> None:
    print("\n### Text\n")
    row("operation", "result")
    row("---", "---")
    sample = texts[:20_000]
    t = time.perf_counter()
    for s in sample:
        index_terms(s)
    row("index_terms (mixed en/zh/ko items)", f"{len(sample) / (time.perf_counter() - t):,.0f} items/s")
    qs = [s[:40] for s in texts[:1000]]
    lat = timed(lambda: [keyword_query(q) for q in qs], 1)[0] / len(qs)
    row("keyword_query (40-char query)", f"{lat * 1000:.1f} µs")
    big = "咖啡 coffee 커피 " * 700_000
    row("keyword_query (10 MB query)", f"{pct(timed(lambda: keyword_query(big), 5), 50):.2f} ms")
    doc = " ".join(texts[:30]) + " needle here " + " ".join(texts[30:60])
    row(f"snippet ({len(doc):,}-char text)", f"{pct(timed(lambda: snippet(doc, 'needle'), 200), 95):.2f} ms p95")


def bench_embed(texts: list[str]) -> None:
    print("\n### Hash embedder\n")
    row("dim", "batch throughput", "one query p50", "one query p95")
    row("---", "---", "---", "---")
    for dim in (256, 384):
        emb = HashEmbedder(dim)
        sample = texts[:20_000]
        t = time.perf_counter()
        for i in range(0, len(sample), 256):
            emb.embed(sample[i:i + 256])
        thr = len(sample) / (time.perf_counter() - t)
        lat = timed(lambda: emb.embed(["what do I usually drink in the morning?"]), 300)
        row(dim, f"{thr:,.0f} items/s", f"{pct(lat, 50):.3f} ms", f"{pct(lat, 95):.3f} ms")


def bench_vectors(texts: list[str], dims: list[int], ann: bool, queries: int) -> None:
    print("\n### Vector search\n")
    row("n × dim", "structure", "build", "RSS", "p50", "p95", "recall@10", "note")
    row("---", "---", "---", "---", "---", "---", "---", "---")
    n = len(texts)
    rng = np.random.default_rng(0)
    sessions = [f"s{i % 100}" for i in range(n)]  # 100 sessions: a session filter keeps 1 %
    for dim in dims:
        emb = HashEmbedder(dim)
        t = time.perf_counter()
        X = np.vstack([emb.embed(texts[i:i + 1000]) for i in range(0, n, 1000)])
        embed_s = time.perf_counter() - t
        keep = np.linalg.norm(X, axis=1) > 0
        qtexts = [" ".join(texts[j].split()[:6]) for j in rng.integers(0, n, queries)]
        Q = emb.embed(qtexts)
        Q = Q[np.linalg.norm(Q, axis=1) > 0]
        label = f"{n // 1000}k × {dim}"
        gc.collect()
        r0 = rss_mb()
        t = time.perf_counter()
        idx = VectorIndex(dim, capacity=n)
        idx.upsert(VectorRow("event" if i % 2 else "knowledge", str(i), X[i], sessions[i], float(i))
                   for i in range(n) if keep[i])
        build = time.perf_counter() - t
        r1 = rss_mb()
        exact = [[int(h.id) for h in idx.search(q, 10)] for q in Q]
        lat = timed(lambda it=iter(Q): idx.search(next(it), 10), len(Q))
        row(label, "exact NumPy", f"{build:.1f} s", f"{r1 - r0:.0f} MB", f"{pct(lat, 50):.2f} ms", f"{pct(lat, 95):.2f} ms",
            "1.000", f"(hash-embedding the {n:,} texts took {embed_s:.0f} s)")
        mat = X[keep]
        for name, fn in (("BLAS @", lambda v: mat @ v), ("einsum", lambda v: np.einsum("ij,j->i", mat, v))):
            lat = timed(lambda it=iter(Q), fn=fn: fn(next(it)), len(Q))
            row(label, f"matrix × query only, {name}", "", "", f"{pct(lat, 50):.2f} ms", f"{pct(lat, 95):.2f} ms", "",
                "the scoring step alone")
        del mat
        for share, flt in (("1 %", VectorFilter(session_key="s7")), ("50 %", VectorFilter(kinds=frozenset({"event"})))):
            lat = timed(lambda it=iter(Q): idx.search(next(it), 10, flt), len(Q))
            row(label, f"exact, {share} filter", "", "", f"{pct(lat, 50):.2f} ms", f"{pct(lat, 95):.2f} ms", "1.000",
                "pre-filter: exact top 10 of the passing items")
        rows_py = [array.array("f", X[i].tobytes()) for i in range(n)]

        def python_cosine(q: np.ndarray) -> list[int]:
            qq = q.tolist()
            scores = [sum(a * b for a, b in zip(r, qq)) for r in rows_py]
            return sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:10]

        lat = timed(lambda it=iter(Q): python_cosine(next(it)), 2)
        row(label, "brute-force Python cosine", "", "", f"{pct(lat, 50):,.0f} ms", f"{max(lat):,.0f} ms", "1.000",
            "baseline, 2 queries")
        del rows_py
        if ann:
            bench_hnsw(label, X, keep, sessions, Q, exact)
        del idx, X
        gc.collect()


def bench_hnsw(label: str, X: np.ndarray, keep: np.ndarray, sessions: list[str], Q: np.ndarray,
               exact: list[list[int]]) -> None:
    try:
        import hnswlib
    except ImportError:
        row(label, "HNSW (hnswlib)", "", "", "", "", "", "not installed: pip install hnswlib")
        return
    n, dim = X.shape
    ids = np.flatnonzero(keep)
    gc.collect()
    r0 = rss_mb()
    t = time.perf_counter()
    h = hnswlib.Index(space="ip", dim=dim)
    h.init_index(max_elements=n, ef_construction=100, M=16)
    h.set_num_threads(2)
    h.add_items(X[ids], ids)
    build = time.perf_counter() - t
    r1 = rss_mb()
    h.set_num_threads(1)
    for ef in (64, 200):
        h.set_ef(ef)
        got = [h.knn_query(q, k=10)[0][0].tolist() for q in Q]
        rec = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)])
        lat = timed(lambda it=iter(Q): h.knn_query(next(it), k=10), len(Q))
        row(label, f"HNSW M=16 ef={ef}", f"{build:.1f} s" if ef == 64 else "", f"{r1 - r0:.0f} MB" if ef == 64 else "",
            f"{pct(lat, 50):.2f} ms", f"{pct(lat, 95):.2f} ms", f"{rec:.3f}", "2 build threads, 1 query thread")
    h.set_ef(64)
    wanted = {i for i in range(n) if sessions[i] == "s7"}
    lat = timed(lambda it=iter(Q): h.knn_query(next(it), k=10, filter=lambda i: i in wanted), len(Q))
    row(label, "HNSW ef=64, 1 % filter", "", "", f"{pct(lat, 50):.2f} ms", f"{pct(lat, 95):.2f} ms", "",
        "Python filter callback per visited node")


def bench_keyword(texts: list[str], mysql: bool) -> None:
    print("\n### Keyword search (FTS5 over index_terms)\n")
    row("backend", "n", "build", "query", "p50", "p95", "hits/query")
    row("---", "---", "---", "---", "---", "---", "---")
    n = len(texts)
    t = time.perf_counter()
    terms = [index_terms(s) for s in texts]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(body, prefix='5')")
    conn.executemany("INSERT INTO f (rowid, body) VALUES (?, ?)", ((i, s) for i, s in enumerate(terms)))
    conn.commit()
    build = time.perf_counter() - t
    rng = random.Random(3)
    zh = [s for s in texts if s[0] in HANZI][:300]
    english = [" ".join(rng.sample(texts[i].split(), 2)) for i in range(0, 1500, 5) if i % 5 < 3]
    cases = {
        "English, 2 words, any": (english, False),
        "English, 2 words, all": (english, True),
        "Chinese, 2-3 chars": ([s[j:j + rng.randint(2, 3)] for s in zh for j in [rng.randint(0, 2)]], False),
        "Chinese, 1 char (prefix)": ([rng.choice(HANZI[:80]) for _ in range(300)], False),
    }
    first = True
    for name, (qs, require_all) in cases.items():
        qs = [q for q in qs if keyword_query(q) is not None][:300]
        hits: list[int] = []

        def run(it=iter(qs), all_=require_all) -> None:
            rows = conn.execute("SELECT rowid FROM f WHERE f MATCH ? ORDER BY bm25(f) LIMIT 50",
                                (keyword_query(next(it)).fts5(all_),)).fetchall()  # type: ignore[union-attr]
            hits.append(len(rows))

        lat = timed(run, len(qs))
        row("SQLite FTS5", f"{n:,}", f"{build:.1f} s" if first else "", name, f"{pct(lat, 50):.2f} ms",
            f"{pct(lat, 95):.2f} ms", f"{sum(hits) / len(hits):.0f}")
        first = False
    if mysql:
        bench_mysql(texts, terms, cases)


def bench_mysql(texts: list[str], terms: list[str], cases: dict[str, tuple[list[str], bool]]) -> None:
    import uuid

    import pymysql

    name = f"membench_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE {name}")
    try:
        cur.execute(f"USE {name}")
        cur.execute("CREATE TABLE d (id INT PRIMARY KEY, body LONGTEXT CHARACTER SET ascii COLLATE ascii_bin, "
                    "FULLTEXT KEY ft (body)) ENGINE=InnoDB")
        t = time.perf_counter()
        for i in range(0, len(terms), 2000):
            cur.executemany("INSERT INTO d VALUES (%s, %s)", list(enumerate(terms[i:i + 2000], start=i)))
        build = time.perf_counter() - t
        first = True
        for case, (qs, require_all) in cases.items():
            qs = [q for q in qs if keyword_query(q) is not None][:300]
            sql = ("SELECT id FROM d WHERE MATCH(body) AGAINST(%s IN BOOLEAN MODE) "
                   "ORDER BY MATCH(body) AGAINST(%s IN BOOLEAN MODE) DESC LIMIT 50")

            def run(it=iter(qs), all_=require_all) -> None:
                b = keyword_query(next(it)).boolean(all_)  # type: ignore[union-attr]
                cur.execute(sql, (b, b))
                cur.fetchall()

            lat = timed(run, len(qs))
            row("MariaDB FULLTEXT", f"{len(terms):,}", f"{build:.1f} s" if first else "", case,
                f"{pct(lat, 50):.2f} ms", f"{pct(lat, 95):.2f} ms", "")
            first = False
    finally:
        cur.execute(f"DROP DATABASE {name}")
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", default="256,384")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-ann", action="store_true")
    ap.add_argument("--mysql", action="store_true", help="also MariaDB FULLTEXT (needs 127.0.0.1:3306)")
    ap.add_argument("--only", choices=["text", "embed", "vectors", "keyword"], action="append")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores); numpy {np.__version__}")
    t0 = time.perf_counter()
    texts = corpus(args.n)
    parts = set(args.only or ["text", "embed", "vectors", "keyword"])
    if "text" in parts:
        bench_text(texts)
    if "embed" in parts:
        bench_embed(texts)
    if "vectors" in parts:
        bench_vectors(texts, [int(d) for d in args.dims.split(",")], not args.no_ann, args.queries)
    if "keyword" in parts:
        bench_keyword(texts, args.mysql)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
