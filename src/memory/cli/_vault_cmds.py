"""``memory vault sync | watch | check``."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from typing import Any

import click

from . import boundary, config_option, emit, json_option, load, main


@main.group()
def vault() -> None:
    """The Markdown vault: sync it to the database, watch it, check it."""


def _service(config_path: str) -> Any:
    from .._service import MemoryService

    return MemoryService(load(config_path), start_vault=False)


@vault.command("sync")
@config_option
@json_option
@boundary
def vault_sync(config_path: str, as_json: bool) -> None:
    """Scan the vault once and bring the database in line with it."""
    with _service(config_path) as svc:
        svc.initialize()
        report = svc.vault_sync()
    data = dataclasses.asdict(report)
    emit(data, as_json, lambda r: click.echo(
        f"new {r['new']}, modified {r['modified']}, moved {r['moved']}, deleted {r['deleted']}, "
        f"unchanged {r['unchanged']}, invalid {len(r['invalid'])}, database {'ok' if r['database_ok'] else 'BEHIND'}"
        f" ({r['seconds']:.2f}s)"))


@vault.command("watch")
@config_option
@json_option
@boundary
def vault_watch(config_path: str, as_json: bool) -> None:
    """Keep the database in sync with the vault until Ctrl+C (foreground)."""
    from ..vault import VaultWatcher

    svc = _service(config_path)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def report() -> None:
        last = svc.vault.last_sync
        if as_json:  # one JSON object per sync, on stdout
            click.echo(json.dumps(dataclasses.asdict(last) if last else {}, default=str))
        else:
            click.echo(_describe(last), err=True)

    watcher = VaultWatcher(svc.vault, svc.config.vault.debounce_ms / 1000, on_sync=report)
    watcher.start(initial_sync=True, watch=True)
    click.echo(f"watching {svc.vault.root} (Ctrl+C to stop)", err=True)
    stop.wait()
    watcher.shutdown()
    svc.close()
    click.echo("stopped", err=True)


def _describe(report: Any) -> str:
    if report is None:
        return "synced"
    return (f"synced: +{report.new} ~{report.modified} >{report.moved} -{report.deleted} "
            f"({'database ok' if report.database_ok else 'database behind'})")


@vault.command("check")
@config_option
@json_option
@boundary
def vault_check(config_path: str, as_json: bool) -> None:
    """Invalid files, conflicts, and files and rows that disagree. Exit 1 if anything is wrong."""
    with _service(config_path) as svc:
        data = svc.vault_check()

    def text(d: dict[str, Any]) -> None:
        click.echo(f"vault {d['root']}: {d['files']} files")
        for path, why in sorted(d["invalid"].items()):
            click.echo(f"  invalid  {path}: {why}")
        for c in d["conflicts"]:
            click.echo(f"  conflict {c}")
        if not d["database"]:
            click.echo("  database unreachable: rows not compared")
        for key in ("missing_rows", "orphan_rows", "stale_rows"):
            for p in d.get(key, []):
                click.echo(f"  {key.replace('_', ' ')[:-1]}: {p}")
        click.echo("ok" if d["ok"] else "problems found")

    emit(data, as_json, text)
    if not data["ok"]:
        raise SystemExit(1)
