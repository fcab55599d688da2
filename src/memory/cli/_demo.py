"""``memory demo``: the README's main job on the embedded default (SQLite in a working folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from . import boundary, main


def demo_config(workdir: Path, dsn: str | None) -> dict[str, Any]:
    return {
        "database": {"dsn": dsn or f"sqlite:///{workdir / 'memory.db'}"},
        "vault": {"root_path": str(workdir / "vault"), "watch": False},
        "failure_queue": {"path": str(workdir / "queue")},
    }


SCRIPT = [
    ("alice", "Hi! What's a good coffee for the morning?", False),
    ("alice", "And something without caffeine? 🌙", False),
    ("bob", "你好，今天的天气怎么样？", False),
    ("bob", "please fail this one [fail]", True),
    ("alice", "Thanks!", False),
]


@main.command()
@click.option("--workdir", default="demo-work", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo's database, queue and vault (created if missing).")
@click.option("--dsn", default=None, help="Use this database instead of the embedded SQLite file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@boundary
def demo(workdir: str, dsn: str | None, as_json: bool) -> None:
    """Record a short scripted conversation and print what was stored."""
    from .._service import MemoryService

    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sent: dict[str, int] = {}
    with MemoryService.from_config(demo_config(root, dsn)) as svc:
        for session, text, fails in SCRIPT:
            sent[session] = sent.get(session, 0) + 1
            ev = svc.append_event({"type": "message", "text": text}, session, {"action": "deliver"})
            turn = svc.append_turn(session, ev.event_id, plan={"steps": ["answer"]})
            if fails:
                svc.finish_turn(turn.turn_id, status="error", error="agent failed on a marked input")
            else:
                svc.finish_turn(turn.turn_id, status="ok")
        flushed = svc.flush(30.0)
        summary = {
            "flushed": flushed,
            "sessions": {s: {"sent": n, "events": len(svc.get_recent_events(s, 1000)),
                             "turns": [t.status for t in svc.get_recent_turns(s, 1000)]}
                         for s, n in sent.items()},
            "health": svc.health(),
        }
    ok = flushed and all(v["sent"] == v["events"] == len(v["turns"]) for v in summary["sessions"].values())
    summary["ok"] = ok
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    else:
        _print(summary)
    if not ok:
        raise click.ClickException("the database does not hold everything the demo sent")


def _print(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="memory demo: what was stored")
    for col in ("session", "sent", "events", "turns (status)"):
        table.add_column(col)
    for s, v in summary["sessions"].items():
        table.add_row(s, str(v["sent"]), str(v["events"]), ", ".join(v["turns"]))
    console = Console()
    console.print(table)
    h = summary["health"]
    console.print(f"database: {h['database']['dsn']}  status: {h['status']}  pending: {h['pending']}")
    console.print("[green]OK[/green]: everything sent is in the database" if summary["ok"] else "[red]MISMATCH[/red]")
