"""``memory decay run``, ``memory forget``, ``memory restore`` against a real vault and database."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from memory.cli import main

from .test_decay import decay_store


def write_config(tmp_path: Path, dsn: str) -> Path:
    cfg = tmp_path / "memory.yaml"
    cfg.write_text(yaml.safe_dump({
        "database": {"dsn": dsn}, "vault": {"root_path": str(tmp_path / "vault"), "watch": False},
        "failure_queue": {"path": str(tmp_path / "queue")}, "audit": {"path": str(tmp_path / "audit.jsonl")},
        "decay": {"enabled": True, "initial_zone": {"event": "cloud"}},
    }), encoding="utf-8")
    return cfg


def test_forget_restore_and_run_from_the_command_line(dsn: str, tmp_path: Path, monkeypatch: object) -> None:
    note = tmp_path / "vault" / "knowledge" / "facts" / "tea.md"
    note.parent.mkdir(parents=True)
    note.write_text("# Tea\n\nGreen.\n", encoding="utf-8")
    cfg = str(write_config(tmp_path, dsn))
    runner = CliRunner()
    assert runner.invoke(main, ["vault", "sync", "--config", cfg]).exit_code == 0

    out = runner.invoke(main, ["forget", "facts/tea", "--reason", "stale", "--config", cfg, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["ok"] and data["kind"] == "knowledge" and data["trash_path"].startswith(".trash/")
    assert not note.exists() and (tmp_path / "vault" / data["trash_path"]).exists()

    out = runner.invoke(main, ["forget", "facts/none", "--config", cfg])
    assert out.exit_code == 1 and "no such event or note" in out.output

    out = runner.invoke(main, ["restore", "facts/tea", "--config", cfg])
    assert out.exit_code == 0 and "facts/tea: restored" in out.output and note.exists()
    out = runner.invoke(main, ["restore", "facts/tea", "--config", cfg])
    assert out.exit_code == 1 and "not forgotten" in out.output

    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    # (``vault sync`` runs a service, whose scheduler may have run decay once: its line is not asserted)
    assert [(x["event"], x.get("id")) for x in lines if x["event"] in ("forget", "restore")] == [
        ("forget", "facts/tea"), ("restore", "facts/tea")]

    store = decay_store(dsn)
    try:
        store.write_batch([("e1", 1.0, "s", "{}", None, None)], [], [])  # 1970: idle for decades
    finally:
        store.dispose()
    out = runner.invoke(main, ["decay", "run", "--dry-run", "--json", "--config", cfg])
    assert out.exit_code == 0, out.output
    dry = json.loads(out.output)
    assert dry["dry_run"] and dry["forgotten"] == ["e1"] and dry["adopted"] == 1  # the note has a row since restore
    out = runner.invoke(main, ["decay", "run", "--config", cfg])
    assert out.exit_code == 0, out.output
    assert "did demote 0, forget 1" in out.output and "zones: core 0, inner 1" in out.output
    out = runner.invoke(main, ["decay", "run", "--config", cfg, "--json"])
    assert json.loads(out.output)["forgotten"] == []
