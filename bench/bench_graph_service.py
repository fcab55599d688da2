"""The graph through the service: ``add_edge`` is an append, and what the recall boost costs.

    .venv/bin/python bench/bench_graph_service.py [--quick] [--no-mysql] [--items N]
    ./dev bench --only graph [--quick]

On each backend (a SQLite file and, if reachable, MariaDB at 127.0.0.1:3306 in a database created
and dropped here), every figure against a baseline measured in the same run:

* ``add_edge`` p50/p99 per call against ``append_event`` p50/p99, the two alternating call by call
  (which one goes first flips every call) on one service whose writer drains into the database
  while they run: the service, config and writer of bench_store's hot path. Both are a
  coercion, an encode and a journal append; both calls' records are checked in the database after.
  What the slowest 1 % of each had happen during the call (preempted by another process, waited
  for the GIL or the queue's lock held by the writer, a collection, a page fault on the journal's
  map: per-thread counters, Linux) and the p99 of the calls none of that happened to are printed
  with it: on a loaded machine the tail is mostly preemption, which no code change removes;
* recall p50/p95 at ``--items`` events (default 100,000: sentences of bench_recall's English
  templates and vocabulary, so a query finds a few items, not thousands) with two edges from every
  event to random others, for known-item queries (the names and things one event mentions), with ``recall.graph_boost`` on (depth 1, top 5) against off, alternating per query on
  the same service, the same queries. Events and edges go through ``append_event`` and
  ``add_edge`` with the writer and the recall indexer running (5,000-record writer batches); the
  indexer's drain is the fill's long pole (on MariaDB its per-item round trips), so the fill's
  write and index phases are printed too.

Timings are wall clock on a shared machine: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import fresh_dsn, mysql_available, pct, sample_obs, service_cfg, table, us  # noqa: E402

from memory import GraphBoostConfig, MemoryService  # noqa: E402
from recall_vocab import EN, EN_EVENTS  # noqa: E402

FACETS = ("first", "last", "obj", "city", "food")  # what a known-item query names
HEADER = ("backend", "measure", "result", "target", "baseline / note")


@dataclasses.dataclass(frozen=True)
class Sizes:
    calls: int  # add_edge calls (and as many append_event calls)
    items: int  # events for the recall measure
    queries: int  # each timed with the boost on and off

    @staticmethod
    def of(quick: bool, items: int | None = None) -> Sizes:
        base = Sizes(5_000, 2_000, 40) if quick else Sizes(100_000, 100_000, 200)
        return dataclasses.replace(base, items=items or base.items)


def note(msg: str) -> None:
    """Progress on stderr (stdout carries only the table)."""
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)


# Besides each call's wall time: was the thread preempted (an involuntary context switch), did it
# wait (a voluntary one: for the GIL or the queue's lock while the writer held it), did a collection
# start, did it take a page fault (the journal's map)? Linux counts these per thread; elsewhere
# only the collections are known.
RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None) if resource is not None else None
CAUSES = ("preempted", "waited", "GC", "page fault")


def appends(dsn: str, n: int) -> dict[str, Any]:
    """``n`` add_edge and ``n`` append_event calls, alternating, the writer draining: per call
    ``(ns, preempted, waited, collections, page faults)``."""
    with tempfile.TemporaryDirectory() as d:
        svc = MemoryService.from_config(service_cfg(dsn, Path(d)))
        svc.initialize()
        try:
            rnd = random.Random(3)
            obs = [sample_obs(i) for i in range(n)]
            nodes = [f"{i:026x}" for i in range(n + 1)]  # shaped like event ids; every edge is new
            weights = [rnd.random() for _ in range(n)]
            out: dict[str, list[tuple[int, ...]]] = {"add_edge": [], "append_event": []}
            gcs = [0]

            def on_gc(phase: str, info: dict[str, Any]) -> None:
                if phase == "start":
                    gcs[0] += 1

            def usage() -> tuple[int, int, int]:
                if RUSAGE_THREAD is None:
                    return 0, 0, 0
                r = resource.getrusage(RUSAGE_THREAD)
                return r.ru_nivcsw, r.ru_nvcsw, r.ru_minflt

            clock = time.perf_counter_ns

            def timed(name: str, call: Any, *args: Any) -> None:
                (iv0, v0, f0), g = usage(), gcs[0]
                t = clock()
                call(*args)
                ns = clock() - t
                iv1, v1, f1 = usage()
                out[name].append((ns, iv1 - iv0, v1 - v0, gcs[0] - g, f1 - f0))

            gc.callbacks.append(on_gc)
            try:
                for i in range(n):  # neither gets a quieter machine: the order flips every call
                    pair = [("add_edge", svc.graph.add_edge, nodes[i], nodes[i + 1], "related_to", weights[i]),
                            ("append_event", svc.append_event, obs[i], "bench")]
                    for name, call, *args in (pair if i % 2 == 0 else pair[::-1]):
                        timed(name, call, *args)
            finally:
                gc.callbacks.remove(on_gc)
            assert svc.flush(300), "writer did not drain"
            assert svc.graph.count() == n, f"{svc.graph.count()} edges stored, {n} added"
            assert svc.store.count("events") == n
            return {**out, "load": os.getloadavg()[0], "causes": CAUSES if RUSAGE_THREAD is not None else ("GC",)}
        finally:
            svc.close(timeout=30)


def solo(dsn: str, n: int) -> dict[str, tuple[float, float]]:
    """p50/p99 of ``n`` add_edge calls on a service of their own, then ``n`` append_event calls on
    another: bench_store's hot-path measure (each call type alone, the writer draining)."""
    out: dict[str, tuple[float, float]] = {}
    for what in ("add_edge", "append_event"):
        with tempfile.TemporaryDirectory() as d:
            svc = MemoryService.from_config(service_cfg(dsn, Path(d)))
            svc.initialize()
            try:
                obs = [sample_obs(i) for i in range(n)]
                nodes = [f"{i:026x}" for i in range(n + 1)]
                lat: list[int] = []
                clock = time.perf_counter_ns
                if what == "add_edge":
                    add = svc.graph.add_edge
                    for i in range(n):
                        t = clock()
                        add(nodes[i], nodes[i + 1], "related_to", 0.5)
                        lat.append(clock() - t)
                else:
                    append = svc.append_event
                    for o in obs:
                        t = clock()
                        append(o, "bench")
                        lat.append(clock() - t)
                assert svc.flush(300)
            finally:
                svc.close(timeout=5)
        out[what] = (pct(lat, 50), pct(lat, 99))
    return out


def tail(calls: list[tuple[int, ...]], causes: Sequence[str]) -> tuple[str, str]:
    """(what happened during the slowest 1 % of calls, the p99 of the calls none of it happened to)."""
    p99 = pct([c[0] for c in calls], 99)
    slow = [c for c in calls if c[0] >= p99]
    at = [CAUSES.index(name) + 1 for name in causes]
    shares = ", ".join(f"{name} {sum(1 for c in slow if c[i]) / len(slow):.0%}" for name, i in zip(causes, at))
    quiet = [c[0] for c in calls if not any(c[i] for i in at)]
    return shares, f"{us(pct(quiet, 99))} ({len(quiet) / len(calls):.0%} of calls)"


def recall_boost(dsn: str, items: int, queries: int, seed: int = 5) -> dict[str, Any]:
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as d:
        cfg = service_cfg(dsn, Path(d), batch_size=5000)
        cfg["recall"] = {"graph_boost": {"enabled": True, "depth": 1, "score": 0.3, "top": 5}}
        svc = MemoryService.from_config(cfg, start_vault=False)
        try:
            t0 = time.perf_counter()
            ids, asks = [], []
            for i in range(items):
                template, slots = rnd.choice(EN_EVENTS), {k: rnd.choice(v) for k, v in EN.items()}
                slots.update(code=f"K{rnd.randint(100, 9999)}", hour=rnd.randint(6, 22), minute=rnd.randint(10, 59))
                ids.append(svc.append_event({"text": template.format(**slots)}, f"s{i % 50}").event_id)
                if len(asks) < queries + 5:  # the names and things this event mentions
                    asks.append(" ".join(slots[f] for f in FACETS if "{" + f + "}" in template))
            for eid in ids:
                for _ in range(2):
                    svc.graph.add_edge(eid, ids[rnd.randrange(items)], "related_to", rnd.random())
            assert svc.flush(1800), "writer did not drain"
            written = time.perf_counter() - t0
            note(f"{items:,} events and {2 * items:,} edges written in {written:.0f} s; indexing")
            while svc.health()["index"]["lag_records"]:
                time.sleep(0.5)
            fill = time.perf_counter() - t0
            note(f"indexed after {fill:.0f} s; querying")
            query = svc.recall_index.query
            assert query is not None
            on, off = query.config, dataclasses.replace(query.config, graph_boost=GraphBoostConfig(enabled=False))
            times: dict[str, list[float]] = {"on": [], "off": []}
            joined = 0
            for q, text in enumerate(asks, start=-5):  # five untimed rounds first: the mirror loads, caches warm
                for name in (("on", "off") if q % 2 == 0 else ("off", "on")):
                    query.config = on if name == "on" else off
                    t = time.perf_counter_ns()
                    hits = svc.recall(text, 10)
                    if q < 0:
                        continue
                    times[name].append(time.perf_counter_ns() - t)
                    if name == "on":
                        joined += sum(1 for h in hits if h.why.graph > 0)
            return {"times": times, "write_s": written, "fill_s": fill, "edges": svc.graph.count(),
                    "boosted_per_query": joined / queries, "load": os.getloadavg()[0]}
        finally:
            svc.close(timeout=30)


def rows_for(backend: str, a: dict[str, Any], r: dict[str, Any], items: int,
             alone: dict[str, tuple[float, float]]) -> list[tuple[str, ...]]:
    e, b = [c[0] for c in a["add_edge"]], [c[0] for c in a["append_event"]]
    e99, b99 = pct(e, 99), pct(b, 99)
    (e_why, e_quiet), (b_why, b_quiet) = tail(a["add_edge"], a["causes"]), tail(a["append_event"], a["causes"])
    on, off = r["times"]["on"], r["times"]["off"]
    return [
        (backend, f"add_edge p50 / p99 (writer draining, {len(e):,} calls)", f"{us(pct(e, 50))} / {us(e99)}",
         "p99 ≤ 50 µs", f"append_event {us(pct(b, 50))} / {us(b99)}, alternating call by call (p99 ×{e99 / b99:.2f}); "
         f"load {a['load']:.1f}"),
        (backend, "add_edge's slowest 1 %: the call was ...", e_why, "", f"append_event's: {b_why}"),
        (backend, "add_edge p99 of the calls none of that happened to", e_quiet, "", f"append_event {b_quiet}"),
        (backend, "add_edge p50 / p99, each call type alone (bench_store's measure)",
         f"{us(alone['add_edge'][0])} / {us(alone['add_edge'][1])}", "p99 ≤ 50 µs",
         f"append_event {us(alone['append_event'][0])} / {us(alone['append_event'][1])} "
         f"(p99 ×{alone['add_edge'][1] / alone['append_event'][1]:.2f})"),
        (backend, f"recall p50 / p95, boost on ({items:,} events, {r['edges']:,} edges)",
         f"{pct(on, 50) / 1e6:.1f} / {pct(on, 95) / 1e6:.1f} ms", "",
         f"off {pct(off, 50) / 1e6:.1f} / {pct(off, 95) / 1e6:.1f} ms (p95 ×{pct(on, 95) / pct(off, 95):.2f}); "
         f"{r['boosted_per_query']:.1f} boosted hits per query; fill {r['fill_s']:.0f} s "
         f"(written {r['write_s']:.0f} s, then the indexer); load {r['load']:.1f}"),
    ]


def run(backends: Sequence[str], sizes: Sizes) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for backend in backends:
        note(f"{backend}: add_edge / append_event, {sizes.calls:,} calls each")
        with fresh_dsn(backend) as dsn:
            a = appends(dsn, sizes.calls)
        with fresh_dsn(backend) as dsn:
            alone = solo(dsn, sizes.calls)
        note(f"{backend}: recall with the boost at {sizes.items:,} events")
        with fresh_dsn(backend) as dsn:
            r = recall_boost(dsn, sizes.items, sizes.queries)
        rows += rows_for(backend, a, r, sizes.items, alone)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 events, fewer calls (smoke run)")
    ap.add_argument("--no-mysql", action="store_true")
    ap.add_argument("--items", type=int, default=None, help="events for the recall measure (default 100,000)")
    args = ap.parse_args()
    sizes = Sizes.of(args.quick, args.items)
    backends = ["sqlite"] + (["mariadb"] if not args.no_mysql and mysql_available() else [])
    print(f"# graph through the service — Python {platform.python_version()}, {platform.machine()}, "
          f"backends: {', '.join(backends)}\n", flush=True)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    rows = run(backends, sizes)
    print(table(rows, HEADER))
    print(f"\nload average before {load0:.2f} / after {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs, shared "
          f"machine); total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
