"""``memory queue status`` and ``memory dead-letter list | requeue | purge``."""

from __future__ import annotations

from typing import Any

import click

from ..queue._admin import dead_letters, describe, inspect_queue, purge, requeue
from ..store._graph import GraphWrites
from . import boundary, config_option, emit, json_option, load, main, open_store


@main.group()
def queue() -> None:
    """Inspect the local failure queue."""


def _print_status(data: dict[str, Any]) -> None:
    click.echo(f"queue folder: {data['path']}")
    for s in data["slots"]:
        state = "live" if s["live"] else "idle"
        click.echo(f"  {s['slot']} ({state}): {s['segments']} segments, {s['bytes']} bytes, "
                   f"watermark {s['watermark']}, lifetime {s['lifetime']}")
    click.echo(f"dead letters: {data['dead_letters']} ({data['dead_letter_bytes']} bytes)")
    click.echo(f"quarantined files: {len(data['quarantined_files'])}")
    click.echo(f"disk used: {data['disk_bytes']} bytes")


@queue.command("status")
@config_option
@json_option
@boundary
def queue_status(config_path: str, as_json: bool) -> None:
    """Slots, journal segments, dead letters and quarantine, read from the folder."""
    cfg = load(config_path)
    data = inspect_queue(cfg.failure_queue.path, int(cfg.failure_queue.dead_letter_max_mb * (1 << 20)))
    emit(data, as_json, _print_status)


@main.group("dead-letter")
def dead_letter() -> None:
    """Records the database rejected max_retries times."""


@dead_letter.command("list")
@config_option
@json_option
@click.option("--limit", default=50, show_default=True, help="Show at most this many entries.")
@boundary
def dl_list(config_path: str, as_json: bool, limit: int) -> None:
    """List dead letters with reason, attempts and last error."""
    entries = dead_letters(load(config_path).failure_queue.path)[:limit]
    emit(entries, as_json, lambda es: click.echo("\n".join(describe(e) for e in es) or "no dead letters"))


@dead_letter.command("requeue")
@config_option
@json_option
@boundary
def dl_requeue(config_path: str, as_json: bool) -> None:
    """Write every dead letter to the database again; successes leave the file."""
    with open_store(config_path) as (cfg, store):
        g = cfg.graph  # a requeued turn or edge gets the automatic edges and the cap the service would give it
        store.graph_writes = GraphWrites(enabled=g.enabled, max_edges_per_item=g.max_edges_per_item,
                                         turn_edges=g.turn_edges, link_edges=g.link_edges)
        result = requeue(cfg.failure_queue.path, store)
    emit(result, as_json, lambda r: click.echo(f"requeued {r['requeued']}, still dead {r['remaining']}"))


@dead_letter.command("purge")
@config_option
@json_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@boundary
def dl_purge(config_path: str, as_json: bool, yes: bool) -> None:
    """Delete every dead letter (they are gone for good)."""
    cfg = load(config_path)
    if not yes:
        click.confirm("Delete all dead letters permanently?", abort=True)
    n = purge(cfg.failure_queue.path)
    emit({"purged": n}, as_json, lambda r: click.echo(f"purged {r['purged']} dead letters"))
