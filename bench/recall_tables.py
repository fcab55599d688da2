"""The recall benchmark's tables (``bench_recall.tables``): the results of ``bench_recall.run``
as Markdown rows, every ratio against a baseline of the same run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from _common import pct, table
from recall_corpus import K, LANGS

if TYPE_CHECKING:
    from bench_recall import Sizes


def _ms(lat: Sequence[float]) -> str:
    return f"{pct(list(lat), 50):.1f} / {pct(list(lat), 95):.1f} ms"


def _hits(hits: dict[str, list[bool]], source: str, langs: Sequence[str] = LANGS) -> str:
    parts = []
    for lang in langs:
        h = hits.get(f"{source}:{lang}", [])
        if h:
            parts.append(f"{lang} {sum(h)}/{len(h)}")
    return ", ".join(parts) or "-"


def _rate(n: float, s: float) -> str:
    return f"{n / s:,.0f}/s" if s > 0 else "-"


def backend_rows(b: str, r: dict[str, Any]) -> list[tuple[str, ...]]:
    mb, lo, ix = 1024 * 1024, r["load"], r["index"]
    hyb_lat, hyb_hits = r["hybrid"].lat, r["hybrid"].hits
    kw_lat, kw_hits = r["keyword"].lat, r["keyword"].hits
    like_lat, like_hits = r["like"].lat, r["like"].hits
    per100k = 100_000 / max(1, ix["vectors"])
    rows = [
        (b, f"load: {lo['events']:,} events (writer) / {lo['notes']:,} notes (vault_sync)",
         f"{lo['events_s']:.1f} / {lo['notes_s']:.1f} s", "setup",
         f"{_rate(lo['events'], lo['events_s'])} / {_rate(lo['notes'], lo['notes_s'])}"),
        (b, f"indexer draining the outbox ({ix['indexed']:,} items, loop_once)", _rate(ix["indexed"], ix["drain_s"]),
         "≥ 2,000/s", f"{ix['indexed'] / ix['drain_s'] / ix['cpu_only']:.2f}× its CPU work alone "
                      f"({ix['cpu_only']:,.0f}/s: terms, digest, hash embedding)"),
        (b, "then the first-start backfill sweep (nothing left to index)", f"{ix['backfill_s']:.1f} s", "",
         f"{ix['backfill_s'] / ix['drain_s']:.2f}× the drain"),
        (b, "recall p50 / p95, hybrid (hash, query embedding included)", _ms(hyb_lat), "p95 ≤ 20 ms",
         f"p50 {pct(like_lat, 50) / pct(hyb_lat, 50):.1f}× faster than the LIKE scan"),
        (b, "recall p95 by query language, hybrid", ", ".join(
            f"{lang} {pct([x for x, g in zip(hyb_lat, r['hybrid'].langs) if g == lang], 95):.1f} ms" for lang in LANGS),
         "", "of the same queries"),
        (b, "recall p50 / p95, hybrid, session_key set (1 of 200 sessions)", _ms(r["session"]), "", ""),
        (b, "recall p50 / p95, keyword only (embedder: none)", _ms(kw_lat), "",
         f"p95 {pct(hyb_lat, 95) / pct(kw_lat, 95):.2f}× → hybrid"),
        (b, f"baseline: search_knowledge LIKE scan p50 / p95 (notes only, {r['like_n']} queries)", _ms(like_lat),
         "baseline", ""),
    ]
    if "cosine" in r:
        c = r["cosine"]
        rows.append((b, f"baseline: brute-force pure-Python cosine, {c['items']:,} vectors ({c['n']} queries)",
                     f"{c['p50']:,.0f} ms p50, {c['max']:,.0f} ms max", "baseline",
                     f"hybrid recall p50 {c['p50'] / pct(hyb_lat, 50):,.0f}× faster; top-10 overlap with the "
                     f"exact NumPy search {c['agree']}/{c['n'] * K}"))
    rows += [
        (b, "hit@10 known-item queries, hybrid", _hits(hyb_hits, "known-item"), "zh, ko 100 %",
         f"{r['ambiguous']} queries contained entirely by > 10 items not counted"),
        (b, "hit@10 labelled set (tests/data) among the distractors, hybrid", _hits(hyb_hits, "labelled"),
         "zh, ko 100 %", "every expected item in the top 10"),
        (b, "hit@10 known-item / labelled, keyword only",
         f"{_hits(kw_hits, 'known-item')} / {_hits(kw_hits, 'labelled')}", "", ""),
        (b, "hit@10 known-item / labelled, search_knowledge (note targets)",
         f"{_hits(like_hits, 'known-item')} / {_hits(like_hits, 'labelled')}", "baseline", ""),
        (b, f"vector index: health vector_bytes ({ix['vectors']:,} vectors)", f"{ix['vector_bytes'] / mb:.1f} MB",
         "", f"{ix['vector_bytes'] * per100k / mb:.1f} MB per 100k items"),
        (b, "process RSS delta across the drain (mirror + caches)", f"{ix['rss_delta'] / mb:.0f} MB", "",
         f"{ix['rss_delta'] * per100k / mb:.0f} MB per 100k items"),
        (b, "a fresh process loading the mirror: time / RSS delta",
         f"{r['mirror']['s']:.2f} s / {r['mirror']['rss'] / mb:.0f} MB", "",
         f"{r['mirror']['rss'] / max(1, ix['vector_bytes']):.2f}× vector_bytes"),
    ]
    rl, rd, ri = r["rload"], r["rdrain"], r["reindex"]
    rows.append((b, f"reindex full=True of a {rl['notes']:,}-note vault (Reindexer)", f"{ri['s']:.1f} s", "≤ 30 s",
                 f"{ri['s'] / rl['notes_s']:.2f}× its cold vault_sync ({rl['notes_s']:.1f} s); first indexing "
                 f"{rd['drain_s']:.1f} s"))
    a = r["append"]
    rows.append((b, f"append_event p50 / p99, indexer busy ({len(a['on']):,} paced calls)",
                 f"{pct(a['on'], 50):.1f} / {pct(a['on'], 99):.1f} µs", "p99 ≤ 1.2× off",
                 f"p99 {pct(a['on'], 99) / pct(a['off'], 99):.2f}× off; the indexer did {a['items']:,} items, "
                 f"{a['idle_batches']} idle batches"))
    rows.append((b, "append_event p50 / p99, recall: {enabled: false} (interleaved rounds)",
                 f"{pct(a['off'], 50):.1f} / {pct(a['off'], 99):.1f} µs", "baseline", ""))
    return rows


def tables(res: dict[str, Any]) -> str:
    sizes: Sizes = res["sizes"]
    rows: list[tuple[str, ...]] = []
    missed: list[str] = []
    for b, r in res["backends"].items():
        rows += backend_rows(b, r)
        missed += [f"- {b}: {m}" for m in r["misses"]]
    out = [f"### {sizes.items:,} items (half notes, half events; en 50 %, zh 25 %, ko 25 %), embedder hash\n",
           table(rows, ("backend", "measure", "result", "target", "ratio / note"))]
    if missed:
        out += ["\nHybrid misses (counted queries; ranks in the top 10, - = absent):\n", *missed]
    m = res["minilm"]
    out.append("\n### embedder: minilm (all-MiniLM-L6-v2, SQLite)\n")
    if "skipped" in m:
        out.append(f"skipped: {m['skipped']}")
    else:
        lat, hits = m["hybrid"].lat, m["hybrid"].hits
        ix = m["index"]
        out.append(table([
            ("model load (first embed)", f"{m['load_s']:.1f} s", "", ""),
            (f"embed() throughput, {sizes.minilm_probe} texts, torch default ({m['threads']} threads)",
             f"{m['embed_rate']:,.0f}/s", "", "the model alone"),
            (f"indexer draining {ix['indexed']:,} items", _rate(ix["indexed"], ix["drain_s"]), "",
             f"{ix['indexed'] / ix['drain_s'] / m['embed_rate']:.2f}× embed() alone"
             + (" (item count cut to fit the time budget)" if m["reduced"] else "")),
            (f"recall p50 / p95, hybrid, {m['n']:,} items", _ms(lat), "p95 ≤ 35 ms", "query embedding included"),
            ("hit@10 known-item queries", _hits(hits, "known-item"), "", ""),
            ("embed() throughput, torch.set_num_threads(1)", f"{m['embed_rate_1']:,.0f}/s", "",
             f"{m['embed_rate_1'] / m['embed_rate']:.2f}× the default"),
            ("recall p50 / p95, torch.set_num_threads(1)", _ms(m["hybrid_1"]), "p95 ≤ 35 ms",
             f"p95 {pct(m['hybrid_1'], 95) / pct(lat, 95):.2f}× the default"),
        ], ("measure", "result", "target", "note")))
    la, lb = res["load_before"], res["load_after"]
    out.append(f"\nload average before {la[0]:.2f} / after {lb[0]:.2f} ({os.cpu_count()} cores, shared machine); "
               f"total {res['elapsed']:.0f} s")
    return "\n".join(out)
