"""The vault benchmark: a generated vault of 10,000 notes (~2 KB, front matter, links)."""

from __future__ import annotations

import hashlib
import os
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import fresh_dsn, pct, service_cfg

from memory import MemoryService
from memory.vault import VaultWatcher

WORDS = ("coffee tea espresso milk roast bean grind water cup morning evening sugar foam cocoa latte "
         "mocha ristretto decaf brew filter press kettle aroma crema barista order table window").split()


def generate(root: Path, n: int, seed: int = 1) -> list[Path]:
    rng = random.Random(seed)
    cats = [f"cat{c:02d}" for c in range(10)]
    paths = []
    for i in range(n):
        cat = cats[i % len(cats)]
        folder = root / "knowledge" / cat
        folder.mkdir(parents=True, exist_ok=True)
        links = " ".join(f"[[{rng.choice(cats)}/note-{rng.randrange(n):05d}]]" for _ in range(3))
        body = " ".join(rng.choice(WORDS) for _ in range(300))
        text = (f"---\ntitle: Note {i}\ntags: [{rng.choice(WORDS)}, {rng.choice(WORDS)}]\nauthor: bench\n---\n"
                f"# Note {i}\n\n{body}\n\n## Links\n\n{links} and [rel](../{cat}/note-{(i + 1) % n:05d}.md) #{cat}\n")
        p = folder / f"note-{i:05d}.md"
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    (root / "md").mkdir(exist_ok=True)
    (root / "md" / "system.md").write_text("# System\n\nBe helpful.\n")
    return paths


def read_and_hash(root: Path) -> float:
    t = time.perf_counter()
    for p in root.rglob("*.md"):
        hashlib.sha256(p.read_bytes()).hexdigest()
    return time.perf_counter() - t


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(backend: str, n: int, edits: int, idle_s: float) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with fresh_dsn(backend) as dsn, tempfile.TemporaryDirectory() as d:
        root = Path(d)
        paths = generate(root / "vault", n)
        os.sync()
        res["hash_baseline"] = read_and_hash(root / "vault")
        cfg = service_cfg(dsn, root)
        cfg["vault"] = {"root_path": str(root / "vault"), "watch": False}
        svc = MemoryService.from_config(cfg, start_vault=False)
        svc.initialize()
        t = time.perf_counter()
        report = svc.vault_sync()
        res["cold"] = time.perf_counter() - t
        assert report.database_ok and report.new == n + 1, report
        t = time.perf_counter()
        again = svc.vault_sync()
        res["resync"] = time.perf_counter() - t
        assert again.unchanged == n + 1
        watcher = VaultWatcher(svc.vault, 0.2)
        watcher.start(initial_sync=False, watch=True)
        while watcher.observer is None:
            time.sleep(0.01)
        rng = random.Random(2)
        lat = []
        for e in range(edits):
            p = rng.choice(paths)
            marker = f"edit-marker-{e}"
            p.write_text(p.read_text(encoding="utf-8") + f"\n{marker}\n", encoding="utf-8")
            t = time.perf_counter()
            key = f"{p.parent.name}/{p.stem}"
            while True:
                row = svc.store.get_note("knowledge", key)
                if row is not None and marker in row["content"]:
                    break
                time.sleep(0.005)
            lat.append(time.perf_counter() - t)
            time.sleep(0.05)
        res["edit"] = {"p50": pct(lat, 50), "p95": pct(lat, 95)}
        time.sleep(1.0)  # let the last burst settle
        c0, t0, syncs0 = cpu(), time.monotonic(), watcher.syncs
        time.sleep(idle_s)
        res["idle_cpu"] = (cpu() - c0) / (time.monotonic() - t0)
        res["idle_syncs"] = watcher.syncs - syncs0
        res["db_pending"] = svc.vault.db_pending
        res["idle_s"] = idle_s
        watcher.shutdown()
        svc.close()
    return res
