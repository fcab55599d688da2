"""Rebuild the searchable copy of the vault: ``python tools/memory_reindex.py reindex --config config/memory.yaml``.

Drops every row of ``configs`` and ``knowledge`` and syncs them again from the files (the files
are the truth, so nothing is lost). When a vector index is configured (``vector:`` in the
config) it is rebuilt from the same notes; with ``vector`` empty there is none to rebuild.
"""

from __future__ import annotations

import argparse
import json
import sys

from memory import MemoryService, load_config


def reindex(config_path: str) -> dict[str, object]:
    cfg = load_config(config_path)
    with MemoryService(cfg, start_vault=False) as svc:
        svc.initialize()
        report = svc.vault.rebuild()
        check = svc.vault_check()
    return {"notes": report.new + report.modified + report.unchanged, "invalid": dict(report.invalid),
            "database_ok": report.database_ok, "in_sync": check["ok"],
            "vector": "rebuilt" if cfg.vector else "no vector index configured"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reindex", help="drop and rebuild the vault rows (and the vector index, if any)")
    r.add_argument("--config", default="config/memory.yaml", help="path to memory.yaml")
    args = ap.parse_args()
    result = reindex(args.config)
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["database_ok"] and result["in_sync"] else 1)


if __name__ == "__main__":
    main()
