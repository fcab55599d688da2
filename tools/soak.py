"""Soak the write path: ``python tools/soak.py --cycles 1000 [--mysql] [--forks] [--readme]``.

By default runs the multi-process chaos run (``tools/chaos.py``): several processes per cycle on
one queue folder and one database, SIGKILL at random (start-up, adoption, mid-append), some
leaving normally, the database down for seconds at a time and for whole cycles; with
``--forks`` some processes fork or spawn children that keep appending. ``--single`` runs the
original single-child crash loop (``tools/crashloop.py``) instead.

Prints progress every 100 cycles and a JSON summary at the end (the full one, with disk use per
cycle, is written to ``<workdir>/summary.json``). ``--readme`` writes the result table into
README.md between the soak markers. Exit status 0 only if every promise held.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from chaos import add_options, options_from, run_chaos  # noqa: E402
from crashloop import run_crash_loop, sqlite_flapper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MYSQL_URL = os.environ.get("MEMORY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")


def _admin(sql: str) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(MYSQL_URL)
    conn = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", autocommit=True)
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def readme_block(s: dict[str, Any], args: argparse.Namespace, minutes: int) -> str:
    """The README's soak table for one chaos result."""
    p, d = s["processes"], s["disk"]
    flags = " ".join(x for x in (f"--cycles {args.cycles}", f"--seed {args.seed}", "--forks" if args.forks else "",
                                 "--mysql" if args.mysql else "") if x)
    kills = p.get("killed", 0) + p.get("killed_early", 0)
    verdict = "all promises held" if not s["failures"] else "FAILED: " + "; ".join(s["failures"][:3])
    return "\n".join([
        f"Latest result (`python tools/soak.py {flags}`, {s['backend']}, {minutes} minutes): {verdict}.",
        "",
        "| cycles | processes (children) | killed (during start-up) | acknowledged | lost | duplicated "
        "| dead-lettered (rejected rows) | wrongly dead-lettered | check() after drain | segments left "
        "| peak queue disk (most preallocated, unused) | database down |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {s['cycles']:,} | {p.get('processes', 0):,} ({p.get('children', 0):,}) | {kills:,} "
        f"({p.get('killed_early', 0):,}) | {s['acknowledged']:,} | {s['lost']} | {s['duplicated']} "
        f"| {s['dead_lettered']:,} | {s['wrongly_dead']} | {'clean' if not s['check_problems'] else 'PROBLEMS'} "
        f"| {len(s['segments_left'])} | {d['peak_mb']} MB ({d['waste_max_mb']} MB) "
        f"| {s['db']['down_seconds']:,.0f} s |",
    ])


def write_readme(block: str) -> None:
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(r"(<!-- soak:start -->\n).*?(\n<!-- soak:end -->)", lambda m: m.group(1) + block + m.group(2),
                     text, flags=re.S)
    if n != 1:
        raise SystemExit("README.md has no <!-- soak:start --> / <!-- soak:end --> block")
    path.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(ap)
    ap.set_defaults(cycles=1000, seed=1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--mysql", action="store_true", help=f"a fresh database on {MYSQL_URL} behind a fault proxy")
    ap.add_argument("--keep", action="store_true", help="keep the MariaDB database afterwards")
    ap.add_argument("--single", action="store_true", help="the single-child crash loop instead (SQLite)")
    ap.add_argument("--readme", action="store_true", help="write the result into README.md")
    ap.add_argument("--progress-every", type=int, default=100, help="print progress every N cycles")
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="memory-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"working in {root}", flush=True)
    started = time.time()
    if args.single:
        db = root / "soak.db"
        result = run_crash_loop(root, f"sqlite:///{db}", args.cycles, args.seed, sqlite_flapper(db), args.max_life,
                                log=lambda s: print(s, flush=True) if s.split("/")[0].endswith("00") else None)
        result["seconds"] = round(time.time() - started)
        print(json.dumps(result, indent=2))
        sys.exit(0 if result["lost"] == 0 and result["duplicated"] == 0 else 1)

    proxy = None
    name = ""
    if args.mysql:
        sys.path.insert(0, str(ROOT))
        from sqlalchemy.engine import make_url

        from tests.faultproxy import FaultProxy

        name = f"memory_soak_{uuid.uuid4().hex[:10]}"
        _admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        url = make_url(MYSQL_URL)
        dsn = f"{MYSQL_URL}/{name}"
        proxy = FaultProxy(url.host or "127.0.0.1", url.port or 3306)
    else:
        dsn = f"sqlite:///{root / 'soak.db'}"
    try:
        summary = run_chaos(options_from(args), dsn, root, proxy, progress_every=args.progress_every)
    finally:
        if proxy is not None:
            proxy.close()
        if name and not args.keep:
            _admin(f"DROP DATABASE IF EXISTS {name}")
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    by_cycle = summary["disk"].pop("by_cycle")
    summary["disk"]["queue_mb_last_cycles"] = [c[2] for c in by_cycle[-5:]]
    summary["process_failures"] = [f.split("\n", 1)[0] for f in summary["process_failures"][:20]]
    print(json.dumps(summary, indent=2))
    if args.readme:
        write_readme(readme_block(summary, args, round((time.time() - started) / 60)))
        print("README.md soak block updated", flush=True)
    sys.exit(1 if summary["failures"] else 0)


if __name__ == "__main__":
    main()
