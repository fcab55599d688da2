"""``memory logs``: read the audit log (the current file and its backups, oldest first), or follow it."""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click

from .._audit import EVENT_TYPES, backup_path, utc_iso
from . import boundary, config_option, json_option, load, main
from ._recall_cmds import _time_bound

# A backup's last write is its newest line: a backup modified before --since (less this slack,
# for lines stamped a moment before they were written) holds nothing to show.
MTIME_SLACK_S = 60.0
FOLLOW_POLL_S = 0.2
TEXT_VALUE_CHARS = 200


@dataclass(frozen=True)
class Filter:
    """Which entries to show: event types (empty: all) and a lower time bound (epoch seconds)."""

    events: frozenset[str] = frozenset()
    since: float | None = None

    def __call__(self, entry: dict[str, Any]) -> bool:
        if self.events and entry["event"] not in self.events:
            return False
        return self.since is None or entry["ts"] >= self.since


@dataclass
class Tally:
    """Malformed lines met (torn by a full disk, edited by hand, not audit lines at all)."""

    malformed: int = 0
    files: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """An audit entry, or None for anything that is not one (skipped and counted by the caller)."""
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("event"), str):
        return None
    ts = entry.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    return entry


def log_files(path: Path) -> list[Path]:
    """The backups, oldest (highest number) first, then the current file: time order."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)")
    numbered: list[tuple[int, Path]] = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pattern.fullmatch(p.name)
            if m and p.is_file():
                numbered.append((int(m.group(1)), p))
    files = [p for _, p in sorted(numbered, reverse=True)]
    return files + ([path] if path.is_file() else [])


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _lines(data: bytes, tally: Tally, final: bool) -> tuple[list[dict[str, Any]], bytes]:
    """Complete lines of ``data`` parsed; the unfinished tail is returned (or judged, if ``final``)."""
    parts = data.split(b"\n")
    tail = parts.pop()
    if final and tail.strip():
        parts.append(tail)
        tail = b""
    out = []
    for raw in parts:
        if not raw.strip():
            continue
        entry = parse_line(raw)
        if entry is None:
            tally.malformed += 1
        else:
            out.append(entry)
    return out, tail


def read_file(path: Path, tally: Tally) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as fh:
            tail = b""
            while chunk := fh.read(1 << 20):
                entries, tail = _lines(tail + chunk, tally, final=False)
                yield from entries
            yield from _lines(tail, tally, final=True)[0]
    except FileNotFoundError:
        return  # expired while we listed (the oldest backup): nothing to show of it
    except OSError as exc:
        tally.unreadable.append(f"{path}: {exc.strerror or exc}")


def read_entries(path: Path, keep: Filter, tally: Tally, current: Follower | None = None) -> Iterator[dict[str, Any]]:
    """Every matching entry of the backups and the current file, oldest first. ``current`` reads
    the current file instead (``--follow`` reads it through the descriptor it then tails)."""
    try:
        files = log_files(path)
    except OSError as exc:
        tally.unreadable.append(f"{path.parent}: {exc.strerror or exc}")
        return
    for p in files:
        # A file rotated after the follower opened it is read through the follower, once.
        if p == path or (current is not None and _identity(p) == current.ino):
            continue
        if keep.since is not None:
            try:
                if p.stat().st_mtime < keep.since - MTIME_SLACK_S:
                    continue
            except FileNotFoundError:
                continue
        tally.files.append(p)
        yield from filter(keep, read_file(p, tally))
    if current is not None:
        yield from filter(keep, current.drain())
    elif path.is_file():
        tally.files.append(path)
        yield from filter(keep, read_file(path, tally))


def _value(v: Any) -> str:
    if isinstance(v, str) and v and not any(c.isspace() or c in '"=' for c in v):
        text = v
    else:
        text = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    # A readable line stays readable; --json shows everything.
    return text if len(text) <= TEXT_VALUE_CHARS else text[:TEXT_VALUE_CHARS] + "…"


def format_entry(entry: dict[str, Any]) -> str:
    """One readable line: time, event, pid, then the fields as key=value."""
    when = entry.get("time") if isinstance(entry.get("time"), str) else utc_iso(entry["ts"])
    rest = " ".join(f"{k}={_value(v)}" for k, v in entry.items() if k not in ("ts", "time", "event", "pid"))
    return f"{when}  {entry['event']:<14} pid={entry.get('pid', '?')}" + (f"  {rest}" if rest else "")


class Follower:
    """Tails the current file, across rotations (also several between two polls)."""

    def __init__(self, path: Path, tally: Tally) -> None:
        self.path, self.tally = path, tally
        self.fh: IO[bytes] | None = None
        self.ino: tuple[int, int] | None = None
        self.tail = b""

    def open(self) -> bool:
        try:
            fh = open(self.path, "rb")
        except OSError:
            return False
        st = os.fstat(fh.fileno())
        self.fh, self.ino, self.tail = fh, (st.st_dev, st.st_ino), b""
        return True

    def drain(self) -> list[dict[str, Any]]:
        assert self.fh is not None
        out: list[dict[str, Any]] = []
        while chunk := self.fh.read(1 << 20):
            entries, self.tail = _lines(self.tail + chunk, self.tally, final=False)
            out += entries
        return out

    def poll(self) -> list[dict[str, Any]]:
        """New entries since the last poll, in order."""
        if self.fh is None:
            return self.drain() if self.open() else []
        out = self.drain()
        try:
            st = os.stat(self.path)
            now_ino: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            now_ino = None
        if now_ino == self.ino:
            return out
        # Rotated: writers stopped writing our file before the rename (they hold the side lock),
        # so what follows our last read is final. Then the backups newer than ours, then the new file.
        out += self.drain()
        out += _lines(self.tail, self.tally, final=True)[0]
        newer = self._newer_backups()
        self.fh.close()
        self.fh, self.ino, self.tail = None, None, b""
        for p in newer:
            out += list(read_file(p, self.tally))
        if self.open():
            out += self.drain()
        return out

    def _newer_backups(self) -> list[Path]:
        """Backups written after ours, oldest first (none if ours is gone)."""
        found: list[Path] = []
        n = 1
        while (p := backup_path(self.path, n)).exists():
            try:
                st = p.stat()
            except FileNotFoundError:
                break
            if (st.st_dev, st.st_ino) == self.ino:
                return list(reversed(found))
            found.append(p)
            n += 1
        return []

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _emit(entries: Iterable[dict[str, Any]], as_json: bool, flush: bool) -> None:
    for entry in entries:
        click.echo(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) if as_json else format_entry(entry))
    if flush:
        sys.stdout.flush()


def follow(tailer: Follower, keep: Filter, as_json: bool, sleep: Callable[[float], None] = time.sleep) -> None:
    """Print new matching entries until interrupted."""
    while True:
        _emit(filter(keep, tailer.poll()), as_json, flush=True)
        sleep(FOLLOW_POLL_S)


@main.command("logs")
@config_option
@json_option
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Show the last N matching entries (0: all).")
@click.option("--follow", "-f", "follow_", is_flag=True, help="Keep printing new entries until Ctrl-C.")
@click.option("--event", "events", multiple=True, type=click.Choice(list(EVENT_TYPES)), metavar="TYPE",
              help="Only this event type (repeatable): " + ", ".join(EVENT_TYPES) + ".")
@click.option("--since", default=None, callback=_time_bound, metavar="WHEN",
              help="Only entries from then on: a span back from now (1h, 7d, 30m), epoch seconds or an "
                   "ISO 8601 date/time (naive = UTC).")
@boundary
def logs(config_path: str, as_json: bool, limit: int, follow_: bool, events: tuple[str, ...],
         since: float | None) -> None:
    """Show the audit log: recalls, forgets, outages, replays, dead letters, ...

    Reads the current file and its rotated backups, oldest first. Malformed lines (a write cut
    short by a full disk, say) are skipped and counted on stderr.
    """
    cfg = load(config_path)
    path = cfg.audit.path
    if not cfg.audit.enabled:
        click.echo(f"note: the audit log is disabled (audit.enabled: false in {cfg.source}); showing what "
                   "an earlier run wrote", err=True)
    keep, tally = Filter(frozenset(events), since), Tally()
    tailer = Follower(path, tally) if follow_ else None
    # Following: the current file is read through the descriptor then tailed, so no line written
    # between the listing and the tailing is missed.
    current = tailer if tailer is not None and tailer.open() else None
    shown: Iterable[dict[str, Any]] = read_entries(path, keep, tally, current)
    if limit:
        shown = collections.deque(shown, maxlen=limit)
    try:
        _emit(shown, as_json, flush=follow_)
        if tailer is not None:
            follow(tailer, keep, as_json)
        elif not tally.files:
            click.echo(f"no audit log at {path}", err=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # `memory logs | head`: the reader has what it wanted. Quiet the flush at exit, too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if tailer is not None:
            tailer.close()
        for problem in tally.unreadable:
            click.echo(f"cannot read {problem}", err=True)
        if tally.malformed:
            click.echo(f"skipped {tally.malformed} malformed line{'s' if tally.malformed != 1 else ''}", err=True)
