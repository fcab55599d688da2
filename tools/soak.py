"""Soak the write path: ``python tools/soak.py --cycles 1000 [--mysql]``.

Runs the crash loop (SIGKILL at random moments while the database flaps) for many cycles and
prints the result: cycles run, records acknowledged, lost, duplicated.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from crashloop import run_crash_loop, sqlite_flapper  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--max-life", type=float, default=0.6)
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="memory-soak-"))
    db = root / "soak.db"
    started = time.time()
    result = run_crash_loop(root, f"sqlite:///{db}", args.cycles, args.seed, sqlite_flapper(db), args.max_life,
                            log=lambda s: print(s, flush=True) if s.split("/")[0].endswith("00") else None)
    result["seconds"] = round(time.time() - started)
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["lost"] == 0 and result["duplicated"] == 0 else 1)


if __name__ == "__main__":
    main()
