"""The graph through the service: ``add_edge`` is an append, and what the recall boost costs.

    .venv/bin/python bench/bench_graph_service.py [--quick] [--no-mysql] [--items N]

On each backend (a SQLite file and, if reachable, MariaDB at 127.0.0.1:3306 in a database created
and dropped here), every figure against a baseline measured in the same run:

* ``add_edge`` p50/p99 per call against ``append_event`` p50/p99, interleaved in blocks of 1,000
  on one service whose writer is stopped (both are an encode and a journal append; the writer's
  drain is the store's, measured by bench_store / bench_graph);
* recall p50/p95 at ``--items`` events (default 20,000: indexing 100,000 through the hash embedder
  and filling the graph takes several minutes on a 2-core machine, past this bench's budget) with
  two edges from every event to random others, with ``recall.graph_boost`` on (depth 1, top 5)
  against off, alternating per query on the same service, the same queries.

Timings are wall clock on a shared machine: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import fresh_dsn, mysql_available, pct, sample_obs, service_cfg, table, us  # noqa: E402

from memory import GraphBoostConfig, MemoryService  # noqa: E402

WORDS = ("zebra", "river", "coffee", "ticket", "garden", "winter", "violin", "market", "harbor", "lantern",
         "pepper", "meadow", "rocket", "canyon", "saddle", "mirror", "orchard", "glacier", "tunnel", "falcon")


def appends(backend_dsn: str, n: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as d:
        svc = MemoryService.from_config(service_cfg(backend_dsn, Path(d)), start_writer=False, start_vault=False)
        try:
            out: dict[str, list[float]] = {"add_edge": [], "append_event": []}
            obs = sample_obs(1)
            clock = time.perf_counter_ns
            for block in range(0, n, 1000):
                for i in range(block, block + 1000):  # warm and interleaved: neither gets a quieter machine
                    t = clock()
                    svc.graph.add_edge(f"event-{i}", f"event-{i + 1}", "related_to", 0.5)
                    out["add_edge"].append(clock() - t)
                for _ in range(1000):
                    t = clock()
                    svc.append_event(obs, "bench")
                    out["append_event"].append(clock() - t)
            return out
        finally:
            svc.close(timeout=0.1)


def recall_boost(backend_dsn: str, items: int, queries: int, seed: int = 5) -> dict[str, Any]:
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as d:
        cfg = service_cfg(backend_dsn, Path(d), batch_size=5000)
        cfg["recall"] = {"graph_boost": {"enabled": True, "depth": 1, "score": 0.3, "top": 5}}
        svc = MemoryService.from_config(cfg, start_vault=False)
        try:
            t0 = time.perf_counter()
            ids = [svc.append_event({"text": " ".join(rnd.choice(WORDS) for _ in range(8)) + f" item {i}"},
                                    f"s{i % 50}").event_id for i in range(items)]
            for i, eid in enumerate(ids):
                for _ in range(2):
                    svc.graph.add_edge(eid, ids[rnd.randrange(items)], "related_to", rnd.random())
            assert svc.flush(600)
            while svc.health()["index"]["lag_records"]:
                time.sleep(0.5)
            fill = time.perf_counter() - t0
            query = svc.recall_index.query
            assert query is not None
            on, off = query.config, dataclasses.replace(query.config, graph_boost=GraphBoostConfig(enabled=False))
            times: dict[str, list[float]] = {"on": [], "off": []}
            joined = 0
            for q in range(queries):
                text = " ".join(rnd.sample(WORDS, 2))
                for name in (("on", "off") if q % 2 == 0 else ("off", "on")):
                    query.config = on if name == "on" else off
                    t = time.perf_counter_ns()
                    hits = svc.recall(text, 10)
                    times[name].append(time.perf_counter_ns() - t)
                    if name == "on":
                        joined += sum(1 for h in hits if h.why.graph > 0)
            return {"times": times, "fill_s": fill, "edges": svc.graph.count(), "boosted_per_query": joined / queries}
        finally:
            svc.close(timeout=30)


def rows_for(backend: str, a: dict[str, list[float]], r: dict[str, Any], items: int) -> list[tuple[str, ...]]:
    e99, a99 = pct(a["add_edge"], 99), pct(a["append_event"], 99)
    on, off = r["times"]["on"], r["times"]["off"]
    return [
        (backend, "add_edge p50 / p99", f"{us(pct(a['add_edge'], 50))} / {us(e99)}", "p99 <= 50 us",
         f"append_event p50/p99 {us(pct(a['append_event'], 50))} / {us(a99)} (x{e99 / a99:.2f})"),
        (backend, f"recall p50 / p95, boost on ({items:,} events, {r['edges']:,} edges)",
         f"{pct(on, 50) / 1e6:.2f} / {pct(on, 95) / 1e6:.2f} ms", "",
         f"off {pct(off, 50) / 1e6:.2f} / {pct(off, 95) / 1e6:.2f} ms (p95 x{pct(on, 95) / pct(off, 95):.2f}); "
         f"{r['boosted_per_query']:.1f} boosted hits per query; fill {r['fill_s']:.0f} s"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 events, fewer calls (smoke run)")
    ap.add_argument("--no-mysql", action="store_true")
    ap.add_argument("--items", type=int, default=None, help="events for the recall measure (default 20,000)")
    args = ap.parse_args()
    items = args.items or (2_000 if args.quick else 20_000)
    calls, queries = (5_000, 40) if args.quick else (50_000, 200)
    backends = ["sqlite"] + (["mariadb"] if not args.no_mysql and mysql_available() else [])
    print(f"# graph through the service — Python {platform.python_version()}, {platform.machine()}, "
          f"backends: {', '.join(backends)}\n", flush=True)
    rows: list[tuple[str, ...]] = []
    for backend in backends:
        with fresh_dsn(backend) as dsn:
            a = appends(dsn, calls)
        with fresh_dsn(backend) as dsn:
            r = recall_boost(dsn, items, queries)
        rows += rows_for(backend, a, r, items)
    print(table(rows, ("backend", "measure", "result", "target", "baseline / note")))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
