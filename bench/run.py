"""Run the benchmarks and print one table per area, with ratios against baselines of the same run.

    ./dev bench                 # everything that is available (MariaDB if reachable)
    ./dev bench --quick         # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import mysql_available, table, us  # noqa: E402


def store_table(args: argparse.Namespace, backends: list[str]) -> str:
    import bench_store

    res = bench_store.run(backends, args.hot, args.drain, args.naive)
    rows = []
    for b, r in res.items():
        rows.append((b, "append_event p50 (writer draining)", us(r["hot"]["p50"]), "≤ 15 µs",
                     f"{r['naive']['p50'] / r['hot']['p50']:.0f}× faster than naive p50 (≥ 50×)"))
        rows.append((b, "append_event p99 (writer draining)", us(r["hot"]["p99"]), "≤ 50 µs", ""))
        rows.append((b, "naive: insert+commit per event p50 (engine defaults)", us(r["naive"]["p50"]), "baseline",
                     ""))
        rows.append((b, "naive with this project's tuned engine p50", us(r["naive_tuned"]["p50"]), "reference",
                     f"{r['naive_tuned']['p50'] / r['hot']['p50']:.0f}× the hot path"))
        rows.append((b, "raw driver executemany, 1,000-row txns (median of 3)", f"{r['raw']:,.0f}/s", "baseline",
                     ""))
        rows.append((b, "writer drain, recall: {enabled: false} (median of 3)", f"{r['drain_no_recall']:,.0f}/s",
                     "≥ 0.8× raw", f"{r['drain_no_recall'] / r['raw']:.2f}× raw driver"))
        rows.append((b, "writer drain with recall's outbox row per event (median of 3)", f"{r['drain']:,.0f}/s",
                     "", f"{r['drain'] / r['raw']:.2f}× raw (2 rows per record)"))
    return table(rows, ("backend", "measure", "result", "target", "ratio"))


def queue_table(args: argparse.Namespace, backends: list[str]) -> str:
    import bench_queue

    rows = []
    mb = 1024 * 1024
    for b in backends:
        r = bench_queue.run(b, args.outage, args.window)
        o = r["outage"]
        rows.append((b, "append p50 / p99, database up", f"{us(r['normal']['p50'])} / {us(r['normal']['p99'])}",
                     "baseline", ""))
        rows.append((b, f"append p50 / p99 during an outage ({args.outage:,} events)",
                     f"{us(o['lat']['p50'])} / {us(o['lat']['p99'])}", "p99 ≤ 2× up and ≤ 50 µs",
                     f"p99 {o['lat']['p99'] / r['normal']['p99']:.2f}× up"))
        rows.append((b, f"RSS with the memory window full ({args.window:,} records)", f"{o['rss_window'] / mb:.1f} MB",
                     "baseline (the configured bound)", ""))
        rows.append((b, f"peak RSS across the outage ({args.outage:,} events)", f"{o['peak'] / mb:.1f} MB",
                     "≤ bound + 20 MB", f"+{(o['peak'] - o['rss_window']) / mb:.1f} MB over the bound"))
        rows.append((b, "constructor with the backlog on disk", f"{r['construct_s'] * 1000:.0f} ms", "≤ 100 ms", ""))
        rows.append((b, "replay + drain after recovery", f"{r['replayed'] / r['drain_s']:,.0f}/s", "≥ 10,000/s",
                     f"{r['replayed']:,} records in {r['drain_s']:.1f} s"))
        rows.append((b, "live append p50 / p99 while replaying", f"{us(r['live']['p50'])} / {us(r['live']['p99'])}",
                     "", f"p99 {r['live']['p99'] / r['normal']['p99']:.2f}× up"))
        if r["check"]:
            rows.append((b, "check() after drain", "; ".join(r["check"]), "[]", "FAILED"))
    return table(rows, ("backend", "measure", "result", "target", "ratio / note"))


def vault_table(args: argparse.Namespace, backends: list[str]) -> str:
    import bench_vault

    rows = []
    for b in backends:
        r = bench_vault.run(b, args.notes, args.edits, args.idle)
        rows.append((b, f"read + SHA-256 of every file ({args.notes:,} notes)", f"{r['hash_baseline']:.2f} s",
                     "baseline", ""))
        rows.append((b, "cold sync (parse + store everything)", f"{r['cold']:.2f} s", "≤ 10 s",
                     f"{r['cold'] / r['hash_baseline']:.0f}× reading the files"))
        rows.append((b, "no-change re-sync", f"{r['resync']:.3f} s", "≤ 0.5 s",
                     f"{r['resync'] / r['cold']:.3f}× cold"))
        rows.append((b, f"edit → database through the watcher p50 / p95 ({args.edits} edits)",
                     f"{r['edit']['p50'] * 1000:.0f} / {r['edit']['p95'] * 1000:.0f} ms", "p95 ≤ 1 s",
                     "debounce 200 ms included"))
        rows.append((b, f"watcher CPU over {r['idle_s']:.0f} idle seconds", f"{r['idle_cpu'] * 100:.2f} %", "≤ 1 %",
                     ""))
    return table(rows, ("backend", "measure", "result", "target", "ratio / note"))


def recall_tables(args: argparse.Namespace, backends: list[str]) -> str:
    import bench_recall

    sizes = bench_recall.Sizes.quick() if args.quick else bench_recall.Sizes.full()
    return bench_recall.tables(bench_recall.run(backends, sizes))


def graph_table(args: argparse.Namespace, backends: list[str]) -> str:
    import bench_graph_service as g

    return table(g.run(backends, g.Sizes.of(args.quick)), g.HEADER)


def decay_table(args: argparse.Namespace, backends: list[str]) -> str:
    import bench_decay

    n = args.decay_items
    rows: list[tuple[str, ...]] = []
    for b in backends:
        r = bench_decay.bench_backend(b, n)
        rows.append((b, f"steady run over {n:,} items ({r['demoted']:,} demoted, {r['forgotten']:,} forgotten, "
                        f"{r['protected']:,} protected)", f"{r['steady']:.2f} s", "≤ 5 s at 100,000 items",
                     f"{r['baseline'] / r['steady']:.1f}× faster than the per-row loop"))
        rows.append((b, "  of which CPU in this process (client side)", f"{r['steady_cpu']:.2f} s", "", ""))
        rows.append((b, "per-row loop, same decisions, twin database (seed's approach)", f"{r['baseline']:.2f} s",
                     "baseline", ""))
        rows.append((b, f"first run (adopts all {r['adopted']:,} items)", f"{r['first']:.2f} s", "", ""))
        rows.append((b, "same end state as the per-row loop", "yes" if r["same"] else "NO", "yes",
                     "" if r["same"] else "FAILED"))
    return table(rows, ("backend", "measure", "result", "target", "ratio / note"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--only", choices=["store", "queue", "vault", "recall", "graph", "decay"], action="append")
    ap.add_argument("--no-mysql", action="store_true")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    args.hot, args.drain, args.naive = 200_000 // scale, 200_000 // scale, 2_000 // scale
    args.outage, args.window = 1_000_000 // scale, 10_000
    args.notes, args.edits, args.idle = 10_000 // scale, 100 // (scale // 5 or 1), 60.0 / (scale // 2 or 1)
    args.decay_items = 100_000 // scale
    backends = ["sqlite"] + (["mariadb"] if not args.no_mysql and mysql_available() else [])
    only = set(args.only or ["store", "queue", "vault", "recall", "graph", "decay"])
    print(f"# memory benchmarks — Python {platform.python_version()}, {platform.machine()}, "
          f"backends: {', '.join(backends)}\n")
    if "store" in only:
        print("## Store: hot path and drain\n")
        print(store_table(args, backends), "\n", flush=True)
    if "queue" in only:
        print("## Failure queue: outage, memory, replay\n")
        print(queue_table(args, backends), "\n", flush=True)
    if "vault" in only:
        print("## Vault: sync and watch\n")
        print(vault_table(args, backends), "\n", flush=True)
    if "recall" in only:
        print("## Recall: hybrid search through the service\n")
        print(recall_tables(args, backends), "\n", flush=True)
    if "graph" in only:
        print("## Graph: add_edge as an append, recall with the boost\n")
        print(graph_table(args, backends), "\n", flush=True)
    if "decay" in only:
        print("## Decay: a run over every item, against a per-row loop\n")
        print(decay_table(args, backends), "\n", flush=True)


if __name__ == "__main__":
    main()
