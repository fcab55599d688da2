"""``memory decay run [--dry-run] [--json]``, ``memory forget ID``, ``memory restore ID``.

They work on the database directly (no service, no writer): the schema is brought to head
first, and a run holds the same database lease as the services' schedulers, so it never runs
alongside one. Forget and restore are written to the audit log like a service's.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sys
from collections.abc import Iterator
from typing import Any

import click

from . import boundary, config_option, emit, json_option, load, main


@contextlib.contextmanager
def _decay(config_path: str) -> Iterator[Any]:
    from .._audit import open_audit_log
    from ..decay import Decay
    from ..store import create_store

    cfg = load(config_path)
    decay_cfg = cfg.decay
    store = create_store(cfg.database)
    audit = open_audit_log(cfg.audit)
    try:
        store.initialize()
        yield Decay(store, decay_cfg, vault_root=cfg.vault.root_path, audit=audit)
    finally:
        with contextlib.suppress(Exception):
            audit.close()
        store.dispose()


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _report_text(d: dict[str, Any]) -> None:
    what = "would" if d["dry_run"] else "did"
    click.echo(f"decay run at {_utc(d['started_at'])}{' (dry run: nothing changed)' if d['dry_run'] else ''}: "
               f"{d['scanned']} items, {d['adopted']} new")
    if d.get("aborted"):
        click.echo(f"  stopped early: {d['aborted']}")
    click.echo(f"  {what} demote {d['demoted_count']}, forget {d['forgotten_count']}; protected (pinned) "
               f"{d['protected']}")
    for change, n in sorted(d["zone_changes"].items()):
        click.echo(f"    zone {change}: {n}")
    for item_id in d["forgotten"][:20]:
        click.echo(f"    forget {item_id}")
    if len(d["forgotten"]) > 20:
        click.echo(f"    ... and {len(d['forgotten']) - 20} more (--json lists all)")
    click.echo("  zones: " + ", ".join(f"{name} {n}" for name, n in d["zones"].items()))
    for item_id, why in d["trash_failures"]:
        click.echo(f"  file of {item_id} not moved: {why}")
    click.echo(f"  {d['seconds']:.2f}s")


@main.group()
def decay() -> None:
    """Zones, demotion and forgetting of idle notes and events."""


@decay.command("run")
@click.option("--dry-run", is_flag=True, help="Report what a run would do now; change nothing.")
@config_option
@json_option
@boundary
def decay_run(dry_run: bool, config_path: str, as_json: bool) -> None:
    """Run decay once now: adopt new items, demote idle ones one zone, forget those idle in zone 4.

    \b
    Exit 0 when done; 1 when another process is running decay right now
    (its scheduler holds the lease) or the run stopped early.
    """
    with _decay(config_path) as d:
        report = d.run_leased(dry_run=dry_run)
    if report is None:
        click.echo("another process is running decay right now; try again when it is done", err=True)
        sys.exit(1)
    data = report.as_dict()
    data["demoted_count"], data["forgotten_count"] = len(report.demoted), len(report.forgotten)
    emit(data, as_json, _report_text)
    if report.aborted:
        sys.exit(1)


def _result(res: Any, as_json: bool) -> None:
    import dataclasses

    data = dataclasses.asdict(res)
    emit(data, as_json, lambda r: click.echo(f"{r['item_id']}: {r['message']}"
                                             + (f" ({r['trash_path']})" if r.get("trash_path") else "")))
    if not res.ok:
        sys.exit(1)


@main.command()
@click.argument("item_id")
@click.option("--reason", default="forgotten by request", show_default=True, help="Kept in the tombstone.")
@config_option
@json_option
@boundary
def forget(item_id: str, reason: str, config_path: str, as_json: bool) -> None:
    """Forget an event or a note now (reversible with `memory restore`).

    \b
    The row is deleted (a tombstone keeps what restore needs), its graph edges
    are removed, recall stops returning it, and a note's file moves to the
    vault's trash folder. Pinned notes and md/ configs are refused. Exit 1 if
    nothing was forgotten.
    """
    with _decay(config_path) as d:
        res = d.forget(item_id, reason)
    _result(res, as_json)


@main.command()
@click.argument("item_id")
@config_option
@json_option
@boundary
def restore(item_id: str, config_path: str, as_json: bool) -> None:
    """Bring a forgotten event or note back (its file from the trash) and re-index it. Exit 1 if not."""
    with _decay(config_path) as d:
        res = d.restore(item_id)
    _result(res, as_json)
