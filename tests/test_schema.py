"""Migrations: empty and older databases reach head, idempotently, also from two processes at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from memory import load_config
from memory.store import DecayWrites, create_store
from memory.store._models import Base, include_in_comparison
from memory.store._sql import alembic_config


def store_for(dsn: str):  # type: ignore[no-untyped-def]
    return create_store(load_config({"database": {"dsn": dsn}}).database)


def test_empty_database_to_head_twice(dsn: str) -> None:
    store = store_for(dsn)
    try:
        assert store.current_revision() is None
        assert not store.schema_state().ready
        store.initialize()
        store.initialize()  # idempotent
        assert store.current_revision() == "0005"
        assert store.schema_state().ready and store.schema_state().missing == ()
        assert store.count("events") == store.count("turns") == store.count("knowledge") == 0
    finally:
        store.dispose()


def test_models_match_migrations(dsn: str) -> None:
    store = store_for(dsn)
    try:
        store.initialize()
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_in_comparison})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == []
    finally:
        store.dispose()


def test_older_database_upgrades_and_keeps_rows(dsn: str) -> None:
    store = store_for(dsn)
    try:
        with store.engine.connect() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.commit()
        assert store.current_revision() == "0001"
        store.recall_outbox_enabled = False  # what a process of that revision wrote: no outbox yet
        store.decay_writes = DecayWrites(tombstones=False)  # ... and no tombstones
        store.write_batch([("e1", 1.0, "s", "{}", None, None)], [], [])
        store.initialize()
        assert store.current_revision() == "0005"
        assert store.get_event("e1") == ("e1", 1.0, "s", "{}", None, None)
        assert store.count("configs") == 0
    finally:
        store.dispose()


def test_two_processes_upgrade_at_once(dsn: str, tmp_path: Path) -> None:
    script = tmp_path / "up.py"
    script.write_text(
        "import sys\nfrom memory import load_config\nfrom memory.store import create_store\n"
        "s = create_store(load_config({'database': {'dsn': sys.argv[1]}}).database)\n"
        "s.initialize()\nprint(s.current_revision())\n", encoding="utf-8")
    procs = [subprocess.Popen([sys.executable, str(script), dsn], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip() for o in outs] == ["0005", "0005"]


def test_cli_db_upgrade(dsn: str, tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"database:\n  dsn: '{dsn}'\nfailure_queue:\n  path: {tmp_path / 'q'}\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "memory.cli", "db", "upgrade", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "schema at revision 0005" in out.stdout
