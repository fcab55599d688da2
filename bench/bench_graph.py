"""The graph's storage at scale: walks on a 1,000,000-edge graph, and upsert throughput.

    .venv/bin/python bench/bench_graph.py [--quick] [--no-mysql] [--edges N]

One run, every ratio against a baseline measured in the same run, on each backend (a SQLite file
and, if reachable, MariaDB at 127.0.0.1:3306 in a database created and dropped here):

* the graph (seeded, deterministic): ``edges / 10`` items, each with 10 outgoing edges to distinct
  random items, of four types, random weights; ids shaped like event ids and knowledge keys. It is
  built through ``add_edges`` itself (10,000-edge transactions, cap 20), which is the bulk figure;
* ``related(depth=2)`` (both directions; the whole neighbourhood returned, about 400 items, and the
  default ``limit=100``, which returns the nearest 100 of the same walk) p50/p95
  over random start items, against seed 000's approach measured interleaved with it (from the same
  starts, alternating which runs first): a Python BFS issuing one query per visited node (the same
  neighbours, on one held connection, so it pays no pool checkout per query); each walk's answer
  is checked equal to the BFS's. Depth 1 and 3 for reference. On MariaDB, the pages InnoDB read
  from disk per walk (a server-wide counter) show whether the graph fits its buffer pool;
* ``add_edges`` as the writer would call it: 100-edge batches of new edges at the cap (every edge
  evicts one), and of re-added edges (updates); against seed 000's per-edge ``add_edge`` (count,
  evict the lowest, ``INSERT OR REPLACE``, commit: one transaction per edge).

Timings are wall clock on a shared machine: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import fresh_dsn, mysql_available, pct, table  # noqa: E402

from memory import load_config  # noqa: E402
from memory.store import SqlStore, create_store  # noqa: E402
from memory.store._graph import GraphSql  # noqa: E402

TYPES = ("related_to", "links_to", "input", "output")
OUT_DEGREE = 10
BUILD_BATCH = 10_000
CAP = 20


@dataclasses.dataclass(frozen=True)
class Sizes:
    edges: int
    walks: int  # timed depth-2 walks (and as many BFS walks)
    walks_other: int  # depth 1 and 3
    write_batches: int  # 100-edge batches per write measure
    seed_edges: int  # edges through seed 000's per-edge add_edge

    @staticmethod
    def full(edges: int = 1_000_000) -> Sizes:
        return Sizes(edges, 300, 50, 100, 2_000)

    @staticmethod
    def quick(edges: int = 50_000) -> Sizes:
        return Sizes(edges, 60, 15, 20, 300)


def graph_store(dsn: str) -> Any:
    """The configured store with the graph methods (whether or not ``SqlStore`` has them yet)."""
    store: SqlStore = create_store(load_config({"database": {"dsn": dsn}}).database)
    if not isinstance(store, GraphSql):
        store.__class__ = type(f"Graph{type(store).__name__}", (type(store), GraphSql), {})
    store.initialize()
    return store


def item(i: int) -> str:
    return f"evt-{i:026x}" if i % 2 else f"knowledge/facts/note-{i:07d}"


def edge_batches(nodes: int, seed: int = 7) -> Iterator[list[tuple[str, str, str, float, float]]]:
    rng = random.Random(seed)
    batch: list[tuple[str, str, str, float, float]] = []
    t0 = 1_700_000_000.0
    for i in range(nodes):
        src = item(i)
        for j, dst in enumerate(rng.sample(range(nodes), OUT_DEGREE)):
            batch.append((src, item(dst), TYPES[rng.randrange(4)], round(rng.random(), 6), t0 + i + j / 100))
        if len(batch) >= BUILD_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def build(store: Any, edges: int) -> dict[str, float]:
    t = time.perf_counter()
    evicted = 0
    for batch in edge_batches(edges // OUT_DEGREE):
        evicted += store.add_edges(batch, CAP)
    elapsed = time.perf_counter() - t
    n = store.edge_count()
    assert evicted == 0 and n == (edges // OUT_DEGREE) * OUT_DEGREE, (evicted, n)
    return {"edges": n, "seconds": elapsed}


def bfs_per_node(store: Any, conn: Any, start: str, depth: int) -> dict[str, int]:
    """Seed 000's walk: one query per node of the frontier (here in both directions)."""
    p = store.param
    sql = f"SELECT dst FROM graph_edges WHERE src = {p} UNION ALL SELECT src FROM graph_edges WHERE dst = {p}"
    seen = {start: 0}
    frontier = [start]
    for d in range(1, depth + 1):
        nxt = []
        for node in frontier:
            for (other,) in conn.exec_driver_sql(sql, (node, node)).fetchall():
                if other not in seen:
                    seen[other] = d
                    nxt.append(other)
        frontier = nxt
    del seen[start]
    return seen


def disk_reads(store: Any) -> int:
    """MariaDB: pages InnoDB had to read because they were not in its buffer pool (server-wide)."""
    if store.dialect == "sqlite":
        return 0
    return int(store.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'")[0][1])


def walks(store: Any, nodes: int, depth: int, n: int, seed: int = 11) -> dict[str, Any]:
    """``related`` (the whole neighbourhood, and the default ``limit=100``) and the per-node BFS
    from the same random starts, rotating which goes first (a later one finds pages cached)."""
    rng = random.Random(seed + depth)
    starts = [item(rng.randrange(nodes)) for _ in range(n + 5)]
    cte: list[float] = []
    top: list[float] = []
    bfs: list[float] = []
    sizes: list[int] = []
    pc = time.perf_counter_ns
    reads = 0
    with store.engine.connect() as conn:
        for k, start in enumerate(starts):
            before = disk_reads(store)
            timings = {}
            order = ("cte", "top", "bfs")
            for which in order[k % 3:] + order[:k % 3]:
                t = pc()
                if which == "cte":
                    got = store.related(start, depth, limit=1_000_000)
                elif which == "top":
                    nearest = store.related(start, depth)
                else:
                    want = bfs_per_node(store, conn, start, depth)
                timings[which] = pc() - t
                conn.rollback()  # end the read transaction: each walk sees the database as it is
            assert dict(got) == want, f"related({start!r}, {depth}) differs from the per-node BFS"
            assert nearest == got[:100]
            if k >= 5:  # the first walks warm the caches
                cte.append(timings["cte"])
                top.append(timings["top"])
                bfs.append(timings["bfs"])
                sizes.append(len(got))
                reads += disk_reads(store) - before
    return {"cte": cte, "top": top, "bfs": bfs, "size": sorted(sizes)[len(sizes) // 2], "reads": reads / max(1, 3 * n)}


def footprint(store: Any) -> tuple[float, float | None]:
    """(MB the graph takes on disk, MB of MariaDB's buffer pool or None for SQLite)."""
    if store.dialect == "sqlite":
        path = Path(store.engine.url.database)
        wal = path.with_name(path.name + "-wal")
        return (path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 1e6, None
    store.execute("ANALYZE TABLE graph_edges")
    size = store.execute("SELECT data_length + index_length FROM information_schema.tables "
                         "WHERE table_schema = DATABASE() AND table_name = 'graph_edges'")[0][0]
    pool = store.execute("SELECT @@innodb_buffer_pool_size")[0][0]
    return int(size) / 1e6, int(pool) / 1e6


def writes(store: Any, nodes: int, batches: int, seed: int = 13) -> dict[str, float]:
    """Writer-like ``add_edges`` batches of 100: new edges at the cap, then re-added edges."""
    rng = random.Random(seed)
    now = 1_800_000_000.0
    new = [[(item(rng.randrange(nodes)), f"bench-new-{b}-{k}", TYPES[k % 4], rng.random(), now + b)
            for k in range(100)] for b in range(batches)]
    t = time.perf_counter()
    evicted = sum(store.add_edges(batch, OUT_DEGREE) for batch in new)  # every source is at the cap
    t_new = time.perf_counter() - t
    existing = [store.edges(item(rng.randrange(nodes)))[:1] for _ in range(batches * 100)]
    again = [(e[0][0], e[0][1], e[0][2], rng.random(), now + batches + 1) for e in existing if e]
    before = store.edge_count()
    t = time.perf_counter()
    for i in range(0, len(again), 100):
        store.add_edges(again[i:i + 100], CAP)
    t_again = time.perf_counter() - t
    assert store.edge_count() == before
    return {"new_rate": batches * 100 / t_new, "evicted": evicted, "again_rate": len(again) / t_again}


def seed_add_edges(store: Any, nodes: int, n: int, seed: int = 17) -> float:
    """Seed 000's ``add_edge``: count, evict the lowest if at the cap, replace, commit; per edge."""
    rng = random.Random(seed)
    p = store.param
    rows = [(item(rng.randrange(nodes)), f"bench-seed-{k}", "related_to", rng.random(), 1_900_000_000.0 + k)
            for k in range(n)]
    if store.dialect == "sqlite":
        evict = (f"DELETE FROM graph_edges WHERE (src, dst, type) IN (SELECT src, dst, type FROM graph_edges "
                 f"WHERE src = {p} ORDER BY weight ASC LIMIT 1)")
        put = f"INSERT OR REPLACE INTO graph_edges VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
    else:
        evict = f"DELETE FROM graph_edges WHERE src = {p} ORDER BY weight ASC LIMIT 1"
        put = f"REPLACE INTO graph_edges VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
    t = time.perf_counter()
    for src, dst, kind, weight, at in rows:
        with store._raw_write() as cur:
            cur.execute(f"SELECT COUNT(*) FROM graph_edges WHERE src = {p}", (src,))
            if cur.fetchone()[0] >= OUT_DEGREE:
                cur.execute(evict, (src,))
            cur.execute(put, (src, dst, kind, weight, at, at))
    return n / (time.perf_counter() - t)


def run_backend(backend: str, sizes: Sizes) -> dict[str, Any]:
    with fresh_dsn("mysql" if backend == "mariadb" else backend) as dsn:
        store = graph_store(dsn)
        try:
            nodes = sizes.edges // OUT_DEGREE
            res: dict[str, Any] = {"build": build(store, sizes.edges)}
            res["footprint"] = footprint(store)
            res["d2"] = walks(store, nodes, 2, sizes.walks)
            res["d1"] = walks(store, nodes, 1, sizes.walks_other)
            res["d3"] = walks(store, nodes, 3, sizes.walks_other)
            res["writes"] = writes(store, nodes, sizes.write_batches)
            res["seed_writes"] = seed_add_edges(store, nodes, sizes.seed_edges)
            return res
        finally:
            store.dispose()


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms"


def rows_for(backend: str, r: dict[str, Any], sizes: Sizes) -> list[tuple[str, ...]]:
    b = r["build"]
    d2 = r["d2"]
    out = [(backend, f"build: add_edges, {BUILD_BATCH:,}-edge txns, cap {CAP} ({b['edges']:,} edges)",
            f"{b['edges'] / b['seconds']:,.0f} edges/s", "", f"{b['seconds']:.1f} s")]
    size, pool = r["footprint"]
    out.append((backend, "graph_edges on disk (data + indexes)" + (", InnoDB buffer pool" if pool else ""),
                f"{size:,.0f} MB" + (f", pool {pool:,.0f} MB" if pool else ""), "",
                f"{d2['reads']:.0f} pages read from disk per depth-2 walk" if pool else "file + WAL"))
    for depth, res, target in ((2, d2, "p95 ≤ 5 ms"), (1, r["d1"], ""), (3, r["d3"], "")):
        n = len(res["cte"])
        out.append((backend, f"related(depth={depth}) p50 / p95 ({n} walks, ~{res['size']:,} items each)",
                    f"{ms(pct(res['cte'], 50))} / {ms(pct(res['cte'], 95))}", target,
                    f"p95 speed-up over per-node BFS: {pct(res['bfs'], 95) / pct(res['cte'], 95):.1f}×"))
        if res["size"] > 100:
            out.append((backend, f"  related(depth={depth}), default limit=100: the nearest 100 items p50 / p95",
                        f"{ms(pct(res['top'], 50))} / {ms(pct(res['top'], 95))}", target,
                        f"p95 speed-up over per-node BFS: {pct(res['bfs'], 95) / pct(res['top'], 95):.1f}×"))
        out.append((backend, f"  per-node Python BFS (seed 000), depth {depth} p50 / p95",
                    f"{ms(pct(res['bfs'], 50))} / {ms(pct(res['bfs'], 95))}", "baseline", ""))
    w = r["writes"]
    out.append((backend, f"add_edges, 100-edge txns, new edges at the cap ({sizes.write_batches} txns)",
                f"{w['new_rate']:,.0f} edges/s", "", f"{w['new_rate'] / r['seed_writes']:.1f}× seed per-edge; "
                f"{w['evicted']:,} evicted"))
    out.append((backend, "add_edges, 100-edge txns, re-added edges (updates)", f"{w['again_rate']:,.0f} edges/s", "",
                f"{w['again_rate'] / r['seed_writes']:.1f}× seed per-edge"))
    out.append((backend, f"  seed 000 add_edge: count + evict + replace + commit per edge ({sizes.seed_edges:,})",
                f"{r['seed_writes']:,.0f} edges/s", "baseline", ""))
    return out


def run(backends: list[str], sizes: Sizes) -> dict[str, dict[str, Any]]:
    return {backend: run_backend(backend, sizes) for backend in backends}


def tables(results: dict[str, dict[str, Any]], sizes: Sizes) -> str:
    rows: list[tuple[str, ...]] = []
    for backend, r in results.items():
        rows += rows_for(backend, r, sizes)
    return table(rows, ("backend", "measure", "result", "target", "ratio / note"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 50,000-edge graph and fewer walks (smoke run)")
    ap.add_argument("--no-mysql", action="store_true")
    ap.add_argument("--edges", type=int, default=None, help="graph size (default 1,000,000; 50,000 with --quick)")
    args = ap.parse_args()
    sizes = Sizes.quick(args.edges or 50_000) if args.quick else Sizes.full(args.edges or 1_000_000)
    backends = ["sqlite"] + (["mariadb"] if not args.no_mysql and mysql_available() else [])
    print(f"# graph benchmark — Python {platform.python_version()}, {platform.machine()}, "
          f"backends: {', '.join(backends)}, {sizes.edges:,} edges\n", flush=True)
    print(tables(run(backends, sizes), sizes))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
