"""``memory demo``: the whole product in one command, on the embedded default.

A scripted conversation (several sessions, ~50 observations) runs through the reference chat
core with memory plugged in by the hooks; its agent answers from ``recall`` scoped to each
message's session. Midway the database really goes away — SQLite is locked by another
connection (a maintenance lock), a MySQL server's address is cut at a local TCP forwarder — and
comes back. Then every record is checked against what was sent, every reply is checked for
words of another session, and a summary is printed. Exit status 0 only if everything matches.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import click

from . import boundary, main

SAMPLE_VAULT = Path(__file__).resolve().parents[3] / "vault"


def demo_config(workdir: Path, dsn: str) -> dict[str, Any]:
    return {
        "database": {"dsn": dsn, "connect_timeout": 1, "read_timeout": 5, "write_timeout": 5,
                     "sqlite_busy_timeout": 0.3},
        "vault": {"root_path": str(workdir / "vault"), "watch": True, "debounce_ms": 100},
        "failure_queue": {"path": str(workdir / "queue"), "retry_base_delay_s": 0.1, "retry_max_delay_s": 0.5,
                          "breaker_threshold": 2},
        "logging": {"warn_interval_s": 3600},
    }


def script(run: str) -> list[tuple[str, str, str, str | None]]:
    """(phase, session, kind, text) — kind: message, system, reaction, empty."""
    s = {name: f"{name}-{run}" for name in ("alice", "bob", "carol", "dave")}
    before = [
        ("alice", "message", "Hi! What's a good coffee for the morning?"),
        ("bob", "message", "你好，今天的天气怎么样？ weather"),
        ("carol", "message", "who are you?"),
        ("alice", "message", "And something without caffeine? 🌙"),
        ("system", "system", "nightly maintenance scheduled"),
        ("dave", "message", "Do you have rooibos?"),
        ("bob", "reaction", "👍"),
        ("carol", "message", "please fail this one [fail]"),
        ("alice", "empty", "   "),
        ("dave", "message", "What is an americano?"),
        ("carol", "message", "What about espresso?"),
        ("bob", "message", "decaf options please"),
        ("alice", "message", "Thanks! Flat white it is."),
        ("dave", "message", "this one reports an error [error]"),
        ("carol", "message", "Is the turmeric latte sweet?"),
        ("system", "system", "cache warmed"),
        ("bob", "message", "Any discount on rainy days?"),
        ("alice", "message", "Can I pay by card?"),
    ]
    during = [
        ("alice", "message", "Are you still there?"),
        ("bob", "message", "下雨天有折扣吗？ rainy"),
        ("carol", "message", "Tell me about decaf."),
        ("dave", "message", "Is espresso strong?"),
        ("carol", "reaction", "❤️"),
        ("alice", "message", "What is a ristretto?"),
        ("bob", "message", "fail again [fail]"),
        ("dave", "message", "Milk options?"),
        ("system", "system", "database maintenance in progress"),
        ("carol", "message", "evening drink suggestions"),
        ("alice", "message", "Is there anything caffeine-free?"),
        ("dave", "message", "What time do you close?"),
        ("bob", "message", "americano or flat white?"),
        ("carol", "message", "How strong is the americano?"),
        ("alice", "message", "rooibos please"),
    ]
    after = [
        ("dave", "message", "Back again: coffee recommendation?"),
        ("alice", "message", "What did I order earlier? The flat white?"),
        ("bob", "message", "谢谢！"),
        ("carol", "message", "decaf espresso?"),
        ("dave", "reaction", "🙏"),
        ("alice", "message", "Goodbye!"),
        ("bob", "message", "weather tomorrow?"),
        ("carol", "message", "Thanks, bye."),
        ("system", "system", "maintenance finished"),
        ("dave", "message", "See you."),
        ("alice", "empty", ""),
        ("bob", "message", "one more flat white"),
        ("carol", "message", "latte art?"),
        ("dave", "message", "bye [error]"),
        ("alice", "message", "last question: espresso?"),
        ("bob", "message", "bye!"),
    ]
    out = []
    for phase, lines in (("before", before), ("outage", during), ("after", after)):
        for who, kind, text in lines:
            out.append((phase, "system" if who == "system" else s[who], kind, text))
    return out


class Outage:
    """A real outage of the configured database, started and ended by the demo."""

    def __init__(self, dsn: str) -> None:
        from sqlalchemy.engine import make_url

        self.url = make_url(dsn)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.lock: sqlite3.Connection | None = None
        self.forwarder: Any = None
        self.how = ("SQLite file locked by another connection" if self.sqlite
                    else "MySQL address cut at a local TCP forwarder")

    def service_dsn(self) -> str:
        if self.sqlite:
            return self.url.render_as_string(hide_password=False)
        from ._netcut import Forwarder

        self.forwarder = Forwarder(self.url.host or "127.0.0.1", self.url.port or 3306)
        return self.url.set(host="127.0.0.1", port=self.forwarder.port).render_as_string(hide_password=False)

    def start(self) -> None:
        if self.sqlite:
            self.lock = sqlite3.connect(self.url.database or "", isolation_level=None, timeout=10)
            self.lock.execute("BEGIN EXCLUSIVE")
        else:
            self.forwarder.set_cut(True)

    def end(self) -> None:
        if self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None
        if self.forwarder is not None:
            self.forwarder.set_cut(False)

    def close(self) -> None:
        self.end()
        if self.forwarder is not None:
            self.forwarder.close()


def _settle(svc: Any, timeout: float = 60.0) -> None:
    """Start the conversation on a synced, indexed sample vault, as a deployment starts serving
    after its start-up sync: otherwise the first replies race the indexer, and on a busy machine
    they quote no note for a reason that has nothing to do with memory."""
    svc.vault_sync()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (svc.health()["index"].get("lag_records") or 0) > 0:
        time.sleep(0.05)


async def _run(svc: Any, outage: Outage, run: str) -> dict[str, Any]:
    from core_hooks.reference import Observation, ObsType, ReferenceCore

    kinds = {"message": ObsType.MESSAGE, "system": ObsType.SYSTEM, "reaction": ObsType.REACTION,
             "empty": ObsType.MESSAGE}
    core = ReferenceCore(svc, hook_timeout=2.0)
    sent: list[tuple[str, Observation]] = []
    stats: dict[str, Any] = {"how": outage.how}
    phase_now = "before"
    for phase, session, kind, text in script(run):
        if phase != phase_now:
            await core.drain()
            if phase == "outage":
                svc.flush(10)
                outage.start()
                stats["committed_before"] = svc.health()["queue"]["committed"]
                stats["started"] = time.monotonic()
            else:
                await asyncio.sleep(1.0)  # let the writer hit the outage and back off
                stats["pending_in_outage"] = svc.queue.pending_count()
                stats["breaker_opened"] = svc.queue.breaker.opened > 0 or svc.queue.breaker.failures > 0
                stats["committed_during"] = svc.health()["queue"]["committed"] - stats["committed_before"]
                outage.end()
                stats["restored"] = time.monotonic()
                # Until the writer's next attempt succeeds, the breaker keeps reads (recall
                # included) on local data only; the last phase is about the database being back.
                deadline = time.monotonic() + 5.0
                while svc.queue.breaker.is_open and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
            phase_now = phase
        user = session.rsplit("-", 1)[0]
        obs = Observation(session, text or "", type=kinds[kind], user_id=user, id=f"in-{len(sent) + 1}")
        sent.append((phase, obs))
        await core.submit(obs)
        await asyncio.sleep(0.01)
    await core.drain()
    drained = await asyncio.get_running_loop().run_in_executor(None, svc.flush, 60.0)
    restored, started = stats.pop("restored"), stats.pop("started")
    stats["outage_seconds"] = round(restored - started, 2)
    stats["drain_seconds"] = round(time.monotonic() - restored, 2)
    return {"core": core, "sent": sent, "outage": stats, "flushed": drained}


def _check_recall(svc: Any, core: Any, sent: list[tuple[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """What the agent recalled, and proof that no reply showed another session's messages.

    Two independent checks: every earlier message a reply quotes is looked up in the database
    (its session must be the asker's), and no reply contains, in quotes, a message that only
    another session sent.
    """
    problems: list[str] = []
    said: dict[str, set[str]] = {}
    for _, obs in sent:
        if obs.session_key != "system" and obs.text.strip():
            said.setdefault(" ".join(obs.text.split()), set()).add(obs.session_key)
    notes = earlier = shown = 0
    example = None
    for obs, result in core.answers:
        found = result.recalled
        if found is None:
            continue
        notes += found.note is not None
        if found.earlier is not None:
            earlier += 1
            ev = svc.get_event(found.earlier.id)
            if ev is None or ev.session_key != obs.session_key:
                shown += 1
                problems.append(f"{obs.id}: the reply quoted event {found.earlier.id} of session "
                                f"{None if ev is None else ev.session_key}, not {obs.session_key}")
            if example is None:
                example = {"session": obs.session_key.rsplit("-", 1)[0], "asked": obs.text, "reply": result.text}
        for text, sessions in said.items():
            if obs.session_key not in sessions and f'"{text}"' in result.text:
                shown += 1
                problems.append(f"{obs.id}: the reply to {obs.session_key} shows another session's message {text!r}")
    if notes == 0:
        problems.append("no reply quoted a note: recall found nothing")
    summary = {"replies": len(core.answers), "from_notes": notes, "earlier_messages": earlier,
               "other_sessions_shown": shown, "offline_answers": svc.health()["index"].get("offline_answers"),
               "example": example}
    return summary, problems


def _verify(svc: Any, core: Any, sent: list[tuple[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    decisions = {id(obs): (decision, turn) for obs, decision, turn in core.processed}
    sessions: dict[str, dict[str, Any]] = {}
    event_ids = [obs.metadata.get("memory_event_id") for _, obs in sent if obs.metadata]
    stored_events = svc.store.existing_ids("events", [e for e in event_ids if e])
    for phase, obs in sent:
        row = sessions.setdefault(obs.session_key, {"observations": 0, "events": 0, "delivered": 0,
                                                    "turns_ok": 0, "turns_error": 0, "during_outage": 0})
        row["observations"] += 1
        row["during_outage"] += phase == "outage"
        eid = (obs.metadata or {}).get("memory_event_id")
        if obs.session_key == "system":
            if eid:
                problems.append(f"{obs.id}: system observation was recorded")
            continue
        if not eid or eid not in stored_events:
            problems.append(f"{obs.id}: event {eid} missing from the database")
            continue
        row["events"] += 1
        decision, turn_id = decisions.get(id(obs), (None, None))
        if decision is None or decision.action.value != "deliver":
            continue
        row["delivered"] += 1
        turn = svc.store.get_turn(turn_id) if turn_id else None
        if turn is None:
            problems.append(f"{obs.id}: delivered message has no turn in the database")
            continue
        if turn[2] != eid:
            problems.append(f"{obs.id}: turn {turn_id} points at event {turn[2]}, not {eid}")
        expected = "error" if ("[fail]" in obs.text or "[error]" in obs.text) else "ok"
        if turn[5] != expected:
            problems.append(f"{obs.id}: turn status {turn[5]}, expected {expected}")
        row["turns_ok" if turn[5] == "ok" else "turns_error"] += 1
    untagged = [o.id for o in core.outputs if not (o.metadata or {}).get("memory_turn_id")]
    if untagged:
        problems.append(f"outputs without memory_turn_id: {untagged}")
    return sessions, problems


@main.command()
@click.option("--workdir", default="demo-work", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo's database, queue and vault copy (created if missing).")
@click.option("--dsn", default=None, help="Use this database (e.g. a MariaDB URL) instead of the SQLite file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@boundary
def demo(workdir: str, dsn: str | None, as_json: bool) -> None:
    """Run a scripted conversation through the reference core, with a real database outage midway."""
    from .._service import MemoryService

    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "vault").exists():
        if SAMPLE_VAULT.is_dir():
            shutil.copytree(SAMPLE_VAULT, root / "vault", ignore=shutil.ignore_patterns("metadata.json"))
        else:
            (root / "vault" / "md").mkdir(parents=True)
            (root / "vault" / "md" / "system.md").write_text("# System\n\nYou are a helpful assistant.\n")
    outage = Outage(dsn or f"sqlite:///{root / 'memory.db'}")
    run = uuid.uuid4().hex[:6]
    try:
        svc = MemoryService.from_config(demo_config(root, outage.service_dsn()))
        svc.initialize()
        _settle(svc)
        result = asyncio.run(_run(svc, outage, run))
        sessions, problems = _verify(svc, result["core"], result["sent"])
        recall, recall_problems = _check_recall(svc, result["core"], result["sent"])
        problems += recall_problems
        time.sleep(0.3)
        vault = svc.vault_check()
        health = svc.health()
        svc.close()
    finally:
        outage.close()
    if not result["flushed"]:
        problems.append("flush did not complete")
    if not vault["ok"]:
        problems.append(f"vault and database disagree: {json.dumps(vault, default=str)[:300]}")
    out = result["outage"]
    if out["pending_in_outage"] == 0:
        problems.append("no record waited in the queue during the outage (was it real?)")
    summary = {"ok": not problems, "problems": problems, "run": run, "sessions": sessions, "outage": out,
               "recall": recall,
               "vault": {k: vault[k] for k in ("root", "files", "invalid", "conflicts")},
               "health": {k: health[k] for k in ("status", "pending", "database")},
               "queue": {k: health["queue"][k] for k in ("accepted", "committed", "dead_lettered", "dropped")}}
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    else:
        _print(summary)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s): the database does not match what was sent")


def _print(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"memory demo, run {s['run']}: sent by the core / held by memory (turns: ok, error)")
    for col in ("session", "sent", "events", "delivered", "ok", "error", "in outage"):
        t.add_column(col, justify="right" if col != "session" else "left")
    for name, r in sorted(s["sessions"].items()):
        t.add_row(name.rsplit("-", 1)[0], *(str(r[k]) for k in ("observations", "events", "delivered", "turns_ok", "turns_error",
                                               "during_outage")))
    console.print(t)
    o = s["outage"]
    t2 = Table(title="the database outage")
    t2.add_column("what")
    t2.add_column("value", justify="right")
    t2.add_row("how", o["how"])
    t2.add_row("outage length (seconds)", str(o["outage_seconds"]))
    t2.add_row("records waiting in the queue", str(o["pending_in_outage"]))
    t2.add_row("records committed while down", str(o["committed_during"]))
    t2.add_row("writer backed off (breaker)", "yes" if o["breaker_opened"] else "no")
    t2.add_row("seconds from restore to all written", str(o["drain_seconds"]))
    console.print(t2)
    v = s["vault"]
    t3 = Table(title="vault")
    t3.add_column("what")
    t3.add_column("value", justify="right")
    t3.add_row("folder", v["root"])
    t3.add_row("notes in sync with the database", str(v["files"]))
    t3.add_row("invalid files", str(len(v["invalid"])))
    t3.add_row("conflicts", str(len(v["conflicts"])))
    console.print(t3)
    r = s["recall"]
    console.print(f"recall: {r['replies']} replies, {r['from_notes']} quoted a note, {r['earlier_messages']} an "
                  f"earlier message of the same session, {r['other_sessions_shown']} showed another session's; "
                  f"{r['offline_answers']} recalls answered offline (vault files and pending records)")
    if r["example"]:
        console.print(f"  {r['example']['session']}: {r['example']['asked']!r} → {r['example']['reply']!r}",
                      markup=False)
    q, h = s["queue"], s["health"]
    console.print(f"health: [bold]{h['status']}[/bold], database {h['database']['dsn']} "
                  f"(reachable: {h['database']['reachable']}), pending {h['pending']}; queue accepted "
                  f"{q['accepted']}, committed {q['committed']}, dead-lettered {q['dead_lettered']}, "
                  f"dropped {q['dropped'] or 0}")
    if s["ok"]:
        console.print("[green]OK[/green]: every observation, turn and outcome is in the database")
    else:
        for p in s["problems"]:
            console.print(f"[red]problem[/red]: {p}")
