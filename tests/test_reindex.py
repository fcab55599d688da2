"""``memory reindex`` and ``tools/memory_reindex.py reindex``: incremental, full, resumable after
``kill -9``, an embedder switch, a live service writing meanwhile, and clean failures.

Every run is the real command in a subprocess over a real database (a SQLite file, and a MariaDB
database per test): the databases are seeded by a service with recall switched off, so nothing
is indexed until the reindex does it.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService, load_config
from memory.store import SqlStore, create_store

from .conftest import db_ids, service_config, wait_for
from .test_unreachable import closed_port

REPO = Path(__file__).resolve().parents[1]
TOOL = [sys.executable, str(REPO / "tools" / "memory_reindex.py")]
CLI = [sys.executable, "-m", "memory.cli"]
NOTES = {"facts/coffee": "# Coffee\n\nA flat white with oat milk every morning.",
         "facts/tea": "# 茶\n\n我们的乌龙茶来自台湾，每天早上泡一壶。",
         "facts/car": "# Car\n\nThe hatchback needs an oil change every 10,000 km."}


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MEMORY_DATABASE_DSN", "MEMORY_ENABLED", "MEMORY_CONFIG")}


def write_config(root: Path, dsn: str, **recall: Any) -> Path:
    cfg = service_config(dsn, root)
    cfg["recall"] = {"indexer_interval_ms": 20, **recall}
    path = root / "memory.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def seed(dsn: str, root: Path, events: int, *, textless_every: int = 5) -> list[str]:
    """``events`` events (every ``textless_every``-th without text: not indexable) and the NOTES,
    written with recall off (no outbox, no index). Returns the event ids."""
    cfg = service_config(dsn, root, batch_size=1000)
    cfg["recall"] = {"enabled": False}
    with MemoryService.from_config(cfg) as svc:
        ids = [svc.append_event({"kind": "tick"} if i % textless_every == 0 else {"text": f"order {i} of plum jam"},
                                f"s{i % 3}").event_id for i in range(events)]
        for key, body in NOTES.items():
            svc.upsert_knowledge(key, body)
        assert svc.flush(120)
        assert svc.vault_sync().database_ok
    return ids


def indexable(events: int, textless_every: int = 5) -> int:
    return sum(1 for i in range(events) if i % textless_every != 0)


@pytest.fixture
def store_of() -> Iterator[Any]:
    made: list[SqlStore] = []

    def make(dsn: str) -> SqlStore:
        store = create_store(load_config({"database": {"dsn": dsn}}).database)
        made.append(store)
        return store

    yield make
    for s in made:
        s.dispose()


def run(config: Path, *args: str, entry: list[str] = TOOL, timeout: float = 300) -> tuple[int, str, str]:
    res = subprocess.run([*entry, "reindex", "--config", str(config), *args], capture_output=True, text=True,
                         timeout=timeout, env=env(), cwd=REPO)
    return res.returncode, res.stdout, res.stderr


def run_json(config: Path, *args: str, entry: list[str] = TOOL) -> dict[str, Any]:
    code, out, err = run(config, "--json", *args, entry=entry)
    assert code == 0, (out, err)
    return json.loads(out)


def items(store: SqlStore) -> list[tuple[Any, ...]]:
    """(kind, item_id, embedder, dim, vector bytes or None, doc_id) of every index row."""
    return [(r[0], r[1], r[2], r[3], None if r[4] is None else bytes(r[4]), int(r[5])) for r in
            store.execute("SELECT kind, item_id, embedder, dim, vector, doc_id FROM recall_items")]


def assert_complete(store: SqlStore, events: int) -> None:
    """Exactly one index row per indexable item: every note, every event with text."""
    rows = items(store)
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate index rows"
    by_kind = {k: sum(1 for r in rows if r[0] == k) for k in ("knowledge", "event")}
    assert by_kind == {"knowledge": len(NOTES), "event": indexable(events)}
    assert store.count("events") == events and store.count("knowledge") == len(NOTES)


# -- incremental and full ----------------------------------------------------------------------------
@pytest.mark.parametrize("entry", [TOOL, CLI], ids=["tool", "cli"])
def test_incremental_run_skips_unchanged_items(dsn: str, tmp_path: Path, store_of: Any, entry: list[str]) -> None:
    seed(dsn, tmp_path, 300)
    cfg = write_config(tmp_path, dsn)
    first = run_json(cfg, entry=entry)
    n = indexable(300)
    assert first["kinds"]["event"] == {"scanned": 300, "indexed": n, "removed": 0, "unchanged": 300 - n}
    assert first["kinds"]["knowledge"]["indexed"] == len(NOTES)
    assert (first["items"], first["embedder"], first["dim"], first["resumed"]) == (n + len(NOTES), "hash-v1/256",
                                                                                   256, False)
    store = store_of(dsn)
    assert_complete(store, 300)
    before = {(r[0], r[1]): r[5] for r in items(store)}

    second = run_json(cfg, entry=entry)
    assert (second["indexed"], second["removed"], second["resumed"]) == (0, 0, False)
    assert second["kinds"]["event"]["unchanged"] == 300 and second["kinds"]["knowledge"]["unchanged"] == len(NOTES)
    assert {(r[0], r[1]): r[5] for r in items(store)} == before  # not one row rewritten

    # A note edited on disk: the vault sync takes it in, and only that note is indexed again.
    (tmp_path / "vault" / "knowledge" / "facts" / "car.md").write_text("# Car\n\nWinter tyres go on in November.")
    third = run_json(cfg, entry=entry)
    assert third["vault"]["modified"] == 1
    assert third["kinds"]["knowledge"] == {"scanned": len(NOTES), "indexed": 1, "removed": 0,
                                           "unchanged": len(NOTES) - 1}
    assert third["kinds"]["event"]["indexed"] == 0
    terms = store.execute("SELECT terms FROM recall_items WHERE kind = 'knowledge' AND item_id = 'facts/car'")
    assert "winter" in terms[0][0].lower()


def test_full_reembeds_everything_and_kinds_limit_the_walk(dsn: str, tmp_path: Path, store_of: Any) -> None:
    seed(dsn, tmp_path, 200)
    cfg = write_config(tmp_path, dsn)
    run_json(cfg)
    store = store_of(dsn)
    old_max = max(r[5] for r in items(store))

    full = run_json(cfg, "--full")
    assert full["full"] is True and full["indexed"] == indexable(200) + len(NOTES) and full["unchanged"] == 200 - \
        indexable(200)
    assert min(r[5] for r in items(store)) > old_max  # every row written again
    assert_complete(store, 200)

    only_events = run_json(cfg, "--full", "--kinds", "event", "--no-vault-sync")
    assert set(only_events["kinds"]) == {"event"} and only_events["vault"] is None
    assert only_events["indexed"] == indexable(200)
    code, _out, err = run(cfg, "--kinds", "events")
    assert code == 2 and "knowledge, event" in err


# -- kill -9 in the middle -----------------------------------------------------------------------------
def test_kill9_mid_reindex_resumes_and_ends_with_one_row_per_item(dsn: str, tmp_path: Path, store_of: Any) -> None:
    events = 4000
    seed(dsn, tmp_path, events)
    cfg = write_config(tmp_path, dsn, indexer_batch_size=10)
    store = store_of(dsn)
    proc = subprocess.Popen([*TOOL, "reindex", "--config", str(cfg), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env(), cwd=REPO)
    try:
        def checkpointed() -> bool:
            try:
                st = store.get_state("reindex:event")
            except Exception:  # noqa: BLE001 - the tool may not have created the tables yet
                return False
            return st is not None and st[0] == 0 and bool(st[1])

        assert wait_for(checkpointed, timeout=120), proc.communicate(timeout=60)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    st = store.get_state("reindex:event")
    assert st is not None and st[0] == 0, f"the reindex finished before it could be killed: {st}"
    cursor = st[1]
    assert cursor is not None
    left = sum(1 for (i,) in store.execute("SELECT event_id FROM events") if i > cursor)
    assert 0 < left < events

    code, out, err = run(cfg)  # text output: it says it resumes
    assert code == 0, (out, err)
    assert "resuming from checkpoint" in out and "resumed from checkpoint" in out
    # It continued from the checkpoint: the pages before it were not read again.
    scanned = int(out.split("event: scanned ")[-1].split(",")[0])
    assert scanned == left
    assert_complete(store, events)
    assert store.get_state("reindex:event") == (2, None)  # the checkpoint is cleared

    again = run_json(cfg)
    assert again["resumed"] is False and again["scanned"] == events + len(NOTES) and again["indexed"] == 0


# -- an embedder switch -----------------------------------------------------------------------------------
def test_embedder_switch_dim_then_none_reembeds_every_row(dsn: str, tmp_path: Path, store_of: Any) -> None:
    seed(dsn, tmp_path, 150)
    total = indexable(150) + len(NOTES)
    store = store_of(dsn)
    cfg = write_config(tmp_path, dsn, hash_dim=256)
    run_json(cfg)
    assert {(r[2], r[3], len(r[4] or b"")) for r in items(store)} == {("hash-v1/256", 256, 1024)}

    # Same embedder, another size: the old vectors are useless to every search.
    cfg = write_config(tmp_path, dsn, hash_dim=128)
    out = run_json(cfg)
    assert (out["embedder"], out["dim"], out["indexed"], out["items"]) == ("hash-v1/128", 128, total, total)
    assert {(r[2], r[3], len(r[4] or b"")) for r in items(store)} == {("hash-v1/128", 128, 512)}
    assert run_json(cfg)["indexed"] == 0  # and it stays done
    svc = MemoryService.from_config({**service_config(dsn, tmp_path), "recall": {"hash_dim": 128}},
                                    start_writer=False, start_vault=False)
    try:
        svc.recall_index.mirror.refresh()
        assert len(svc.recall_index.mirror) == total  # a service on the new size sees every vector
    finally:
        svc.close()

    cfg = write_config(tmp_path, dsn, embedder="none")
    out = run_json(cfg)
    assert (out["embedder"], out["indexed"]) == (None, total)
    assert {(r[2], r[3], r[4]) for r in items(store)} == {(None, None, None)}
    assert_complete(store, 150)


# -- a live service writing meanwhile ---------------------------------------------------------------------
LIVE = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from memory import MemoryService
    cfg = json.loads(sys.argv[1]); stop = Path(sys.argv[2])
    svc = MemoryService.from_config(cfg)
    ids, slowest = [], 0.0
    print("ready", flush=True)
    while not stop.exists() or len(ids) < 300:
        t = time.perf_counter()
        ids.append(svc.append_event({"text": f"live cherry {len(ids)}"}, "live").event_id)
        slowest = max(slowest, time.perf_counter() - t)
        time.sleep(0.002)
    flushed = svc.flush(120)
    svc.close()
    print(json.dumps({"ids": ids, "slowest": slowest, "flushed": flushed}), flush=True)
""")


def test_live_service_appending_meanwhile_loses_nothing(dsn: str, tmp_path: Path, store_of: Any) -> None:
    seed(dsn, tmp_path, 2000)
    cfg = write_config(tmp_path, dsn, indexer_batch_size=20)
    live_cfg = service_config(dsn, tmp_path / "live")
    live_cfg["vault"]["root_path"] = str(tmp_path / "vault")
    live_cfg["recall"] = {"indexer_interval_ms": 20}
    stop = tmp_path / "stop"
    live = subprocess.Popen([sys.executable, "-c", LIVE, json.dumps(live_cfg), str(stop)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "ready"
        code, out, err = run(cfg, "--full", "--json")
    finally:
        stop.touch()
        live_out, live_err = live.communicate(timeout=300)
    assert code == 0, (out, err)
    assert live.returncode == 0, live_err
    report = json.loads(live_out.strip().splitlines()[-1])
    assert report["flushed"] is True
    assert len(db_ids(dsn, report["ids"])) == len(report["ids"])  # every append committed
    assert report["slowest"] < 2.0, report["slowest"]  # appends never waited on the reindex
    # The walk reached events the live service committed while it ran: the two overlapped.
    assert json.loads(out)["kinds"]["event"]["scanned"] > 2000

    store = store_of(dsn)
    run_json(cfg)  # whatever the live indexer had not done when it stopped
    events = 2000 + len(report["ids"])
    rows = items(store)
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys))
    assert sum(1 for r in rows if r[0] == "event") == indexable(2000) + len(report["ids"])
    assert store.count("events") == events


# -- failures: one clear line, no traceback ----------------------------------------------------------------
def assert_clean_failure(code: int, out: str, err: str, *needles: str) -> None:
    assert code != 0, (out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    line = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(line) == 1, err
    for n in needles:
        assert n in line[0], (n, line[0])


@pytest.mark.parametrize("entry", [TOOL, CLI], ids=["tool", "cli"])
def test_bad_config_path(tmp_path: Path, entry: list[str]) -> None:
    code, out, err = run(tmp_path / "missing.yaml", entry=entry)
    assert_clean_failure(code, out, err, "missing.yaml", "config file not found")


def test_invalid_config_names_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", hash_dim=7)
    code, out, err = run(path)
    assert_clean_failure(code, out, err, "recall.hash_dim")


@pytest.mark.parametrize("entry", [TOOL, CLI], ids=["tool", "cli"])
def test_unreachable_database(tmp_path: Path, entry: list[str]) -> None:
    port = closed_port()
    path = write_config(tmp_path, f"mysql+pymysql://root:sekret@127.0.0.1:{port}/nodb")
    code, out, err = run(path, entry=entry, timeout=120)
    assert_clean_failure(code, out, err, "unreachable", f"127.0.0.1:{port}")
    assert "sekret" not in err and code == 1


def test_embedder_unavailable_changes_nothing(tmp_path: Path, store_of: Any) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    seed(dsn, tmp_path, 20)
    run_json(write_config(tmp_path, dsn))
    path = write_config(tmp_path, dsn, embedder="minilm")
    # The extra made unimportable, as on a machine without it.
    hide = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", hide, str(REPO / "tools" / "memory_reindex.py"), "reindex",
                          "--config", str(path)], capture_output=True, text=True, timeout=120, env=env())
    assert_clean_failure(res.returncode, res.stdout, res.stderr, "minilm", "install")
    assert {(r[2], r[3]) for r in items(store_of(dsn))} == {("hash-v1/256", 256)}  # vectors kept


def test_recall_disabled_is_refused(tmp_path: Path) -> None:
    code, out, err = run(write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", enabled=False))
    assert_clean_failure(code, out, err, "recall.enabled is false")


# -- on a terminal: a progress bar ---------------------------------------------------------------------------
def test_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    seed(dsn, tmp_path, 50)
    master, slave = pty.openpty()
    proc = subprocess.Popen([*TOOL, "reindex", "--config", str(write_config(tmp_path, dsn))], stdout=slave,
                            stderr=slave, env={**env(), "COLUMNS": "100", "TERM": "xterm"}, cwd=REPO)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "━" in text and f"{50 + len(NOTES)}/{50 + len(NOTES)}" in text, text
    assert f"items in the index: {indexable(50) + len(NOTES)}" in text
