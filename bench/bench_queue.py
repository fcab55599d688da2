"""The failure-queue benchmark: the hot path during an outage, memory across a long outage,
drain after recovery, replay on start-up, and appends while a replay runs.

An outage is real: SQLite held under an exclusive lock by another connection, or MariaDB behind
a closed port. Memory is measured in a child process (VmRSS/VmHWM from /proc).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import fresh_dsn, pct, sample_obs, service_cfg

from memory import MemoryService


def _rss() -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _reset_peak() -> bool:
    """Reset VmHWM so the peak covers only the outage (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def outage_child(dsn: str, root: str, n: int, window: int) -> dict[str, Any]:
    """Run in a fresh process: n appends while the database is down; latency and memory."""
    import array
    import gc

    svc = MemoryService.from_config(service_cfg(dsn, Path(root), max_in_memory=window, retry_max_delay_s=5))
    lat = array.array("q", bytes(8 * (n - window)))  # allocated before the baseline: not growth
    for i in range(window):  # fill the memory window: what the configured bound costs
        svc.append_event(sample_obs(i), "bench")
    gc.collect()
    rss_window, _ = _rss()
    peak_before = _reset_peak()
    pc = time.perf_counter_ns
    append = svc.append_event
    for i in range(n - window):
        o = sample_obs(i)
        t = pc()
        append(o, "bench")
        lat[i] = pc() - t
    rss_end, peak = _rss()
    del peak_before
    gc.collect()
    lat_p = {"p50": pct(list(lat), 50), "p99": pct(list(lat), 99)}
    svc.queue._stop.set()  # leave the backlog on disk for the drain / replay measurements
    svc.queue.wake()
    svc.queue.close(timeout=0)
    return {"lat": lat_p, "rss_window": rss_window, "rss_end": rss_end, "peak": peak,
            "accepted": svc.queue.stats()["accepted"]}


def hot_normal(dsn: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        svc = MemoryService.from_config(service_cfg(dsn, Path(d)))
        svc.initialize()
        lat = []
        pc = time.perf_counter_ns
        for i in range(n):
            o = sample_obs(i)
            t = pc()
            svc.append_event(o, "bench")
            lat.append(pc() - t)
        svc.flush(300)
        svc.close()
    return {"p50": pct(lat, 50), "p99": pct(lat, 99)}


def run(backend: str, n: int, window: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with fresh_dsn(backend) as dsn, tempfile.TemporaryDirectory() as d:
        res["normal"] = hot_normal(dsn, min(n, 200_000))
        # The outage: SQLite locked by another connection; MariaDB reached through a closed port.
        locker = None
        outage_dsn = dsn
        if backend == "sqlite":
            MemoryService.from_config(service_cfg(dsn, Path(d) / "init")).close()
            locker = sqlite3.connect(dsn.removeprefix("sqlite:///"), isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
        else:
            import socket

            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            outage_dsn = f"mysql+pymysql://root@127.0.0.1:{port}/down"
        out = subprocess.run([sys.executable, __file__, "outage-child", outage_dsn, d, str(n), str(window)],
                             capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        res["outage"] = json.loads(out.stdout.strip().splitlines()[-1])
        if locker is not None:
            locker.execute("ROLLBACK")
            locker.close()
        # Recovery: a new process starts on the folder the outage left (1M records on disk).
        t0 = time.perf_counter()
        svc = MemoryService.from_config(service_cfg(dsn, Path(d), max_in_memory=window))
        res["construct_s"] = time.perf_counter() - t0
        lat = []
        pc = time.perf_counter_ns
        for i in range(20_000):  # live appends while the replay runs
            o = sample_obs(i)
            t = pc()
            svc.append_event(o, "live")
            lat.append(pc() - t)
            if i % 200 == 0:
                time.sleep(0.001)
        res["live"] = {"p50": pct(lat, 50), "p99": pct(lat, 99)}
        assert svc.flush(3600)
        res["drain_s"] = time.perf_counter() - t0
        res["replayed"] = svc.queue.committed
        res["check"] = svc.check()
        svc.close()
    return res


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "outage-child":
    sys.path.insert(0, str(Path(__file__).parent))
    print(json.dumps(outage_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
