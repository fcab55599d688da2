"""``memory recall QUERY`` and ``memory reindex`` (the latter also as ``tools/memory_reindex.py``)."""

from __future__ import annotations

import datetime as _dt
import sys
import time
import unicodedata
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click

from .._config import Config
from .._errors import MemoryServiceError, StoreError
from ..index._indexer import KINDS_ORDER, ReindexStep
from ..index._reindex_run import ReindexOptions, ReindexSummary, parse_kinds_list, run_reindex
from . import boundary, config_option, emit, json_option, load, main

F = TypeVar("F", bound=Callable[..., Any])
KIND_CHOICE = click.Choice(list(KINDS_ORDER))


def _apply(fn: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        fn = option(fn)
    return fn


# -- recall ------------------------------------------------------------------------------------------
def _time_bound(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A bad bound is a usage error here (the library ignores it with a warning: a caller's flow
    must go on, a person at a prompt should be told)."""
    from ..index._fusion import parse_time_bound

    if value is None:
        return None
    try:
        return parse_time_bound(value, now=time.time())
    except (ValueError, OverflowError) as exc:
        raise click.BadParameter(str(exc).removeprefix("time bound: ")) from None


def recall_filter_options(fn: F) -> F:
    """``--kind`` (repeatable), ``--session``, ``--since``, ``--until``."""
    return _apply(fn, [
        click.option("--kind", "kinds", multiple=True, type=KIND_CHOICE,
                     help="Search only this kind (repeatable; default: both)."),
        click.option("--session", "session_key", default=None, metavar="KEY",
                     help="Only this session's events (notes are shared and always searched)."),
        click.option("--since", default=None, callback=_time_bound, metavar="WHEN",
                     help="Only items from then on: a span back from now (7d, 12h, 30m), epoch seconds "
                          "or an ISO 8601 date/time (naive = UTC)."),
        click.option("--until", default=None, callback=_time_bound, metavar="WHEN",
                     help="Only items up to then (same forms as --since)."),
    ])


def _service(cfg: Config) -> Any:
    from .._disabled import DisabledMemoryService, disabled_by_env
    from .._service import MemoryService

    if disabled_by_env():
        return DisabledMemoryService()
    # No writer (a query has nothing to write, and must not adopt other processes' journals) and
    # no start-up vault sync (a query does not change the database; `memory vault sync` does).
    return MemoryService(cfg, start_writer=False, start_vault=False)


def _catch_up(svc: Any, wait: float) -> str | None:
    """Let the index catch up for up to ``wait`` seconds on this thread; a notice for stderr, if any.

    The indexer's own step (``loop_once``): queued changes first, then an unfinished first-start
    backfill, then this process's vectors loaded. Stops as soon as there is nothing left to do.
    Whatever is still queued afterwards is scored by recall itself (its "fresh" items, up to
    ``recall.max_fresh``), so the answer covers the whole database either way; waiting only
    moves work from every query to the index.
    """
    from .._disabled import DisabledMemoryService

    if isinstance(svc, DisabledMemoryService):
        return "memory is disabled (MEMORY_ENABLED=0): nothing to recall"
    parts = svc.recall_index
    if not parts.enabled:
        return f"recall is disabled (recall.enabled: false in {svc.config.source})"
    try:
        svc.initialize()
    except StoreError as exc:
        return f"database unreachable ({exc}); answering from the vault files only, by keyword"
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and parts.worker.loop_once():
            pass
        if parts.mirror is not None:
            parts.mirror.refresh()  # this process's vectors (loop_once refreshes too; --wait 0 does not call it)
    except MemoryServiceError as exc:  # the database, or a model that fails to load (recall copes)
        return f"the index could not catch up ({exc}); answering from what it holds"
    return None


def _utc(ts: float | None) -> str:
    if ts is None:
        return ""
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _width(text: str) -> int:
    """Terminal columns: wide (CJK, Hangul) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def _cut(text: str, columns: int) -> str:
    if _width(text) <= columns:
        return text
    out, used = [], 0
    for c in text:
        w = _width(c)
        if used + w > columns - 1:
            return "".join(out) + "…"
        out.append(c)
        used += w
    return "".join(out)


HEADERS = ("#", "kind", "id", "score", "title/session", "ts (UTC)", "snippet")


def _rows(hits: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(str(i), h["kind"], h["id"], f"{h['score']:.4f}", h["title"] or h["session_key"] or "", _utc(h["ts"]),
             _one_line(h["text"])) for i, h in enumerate(hits, 1)]


def _plain_table(hits: list[dict[str, Any]], out: Callable[[str], None]) -> None:
    if not hits:
        out("no matches")
        return
    rows = [tuple(_cut(c, 40) if i in (2, 4) else c for i, c in enumerate(r)) for r in _rows(hits)]
    rows = [HEADERS, *[r[:-1] + (_cut(r[-1], 100),) for r in rows]]
    widths = [max(_width(r[i]) for r in rows) for i in range(len(HEADERS) - 1)]
    for r in rows:
        # Rank and score right-aligned (numbers), the rest left; widths in terminal columns.
        cells = [" " * (w - _width(c)) + c if i in (0, 3) else c + " " * (w - _width(c))
                 for i, (c, w) in enumerate(zip(r, widths))]
        out("  ".join([*cells, r[-1]]).rstrip())


def _rich_table(hits: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not hits:
        console.print("no matches")
        return
    table = Table(show_lines=True)
    # Long ids and titles are cut (--json has them whole); the snippet gets the remaining width.
    limits = {"id": 28, "title/session": 24}
    for h in HEADERS:
        table.add_column(h, justify="right" if h in ("#", "score") else "left",
                         overflow="fold" if h == "snippet" else "ellipsis", no_wrap=h != "snippet",
                         max_width=limits.get(h), min_width=30 if h == "snippet" else None)
    for r in _rows(hits):
        table.add_row(*r)
    console.print(table)


@main.command()
@click.argument("query")
@click.option("--k", "k", type=click.IntRange(1, 1000), default=None,
              help="Results to return (default: recall.default_k).")
@recall_filter_options
@click.option("--wait", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds the index may spend catching up before answering (0: answer at once).")
@config_option
@json_option
@boundary
def recall(query: str, k: int | None, kinds: tuple[str, ...], session_key: str | None, since: float | None,
           until: float | None, wait: float, config_path: str, as_json: bool) -> None:
    """Notes and events that match QUERY, best first (keyword and vector search fused with recency).

    \b
    What it searches: everything indexed, plus every change still waiting for
    the indexer (scored for this query, up to recall.max_fresh of the newest).
    Before answering, the index may catch up for --wait seconds here (the work
    a running service's indexer would do anyway). Without --session every
    session's events are searched. It does not sync the vault first: run
    `memory vault sync` (or keep a service watching) for files edited since.
    If the database cannot be reached it answers from the vault files, by
    keyword, and says so on stderr.

    The table shows rank, kind, id, score, the note's title or the event's
    session, the event's time (UTC) and a snippet; --json prints each hit in
    full (ts in epoch seconds, the `why` of its score).
    """
    cfg = load(config_path)
    svc = _service(cfg)
    try:
        notice = _catch_up(svc, wait)
        hits = svc.recall(query, k, kinds=kinds or KINDS_ORDER, session_key=session_key, since=since, until=until)
    finally:
        svc.close(timeout=2.0)
    if notice:
        click.echo(notice, err=True)
    data = [h.as_dict() for h in hits]
    if not as_json and sys.stdout.isatty():
        _rich_table(data)
    else:
        emit(data, as_json, lambda d: _plain_table(d, click.echo))


# -- reindex -----------------------------------------------------------------------------------------
def _kinds_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_kinds_list(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def reindex_scope_options(fn: F) -> F:
    """``--full``, ``--kinds``, ``--no-vault-sync``, ``--rebuild-vault``."""
    return _apply(fn, [
        click.option("--full", is_flag=True, help="Re-embed every item, changed or not."),
        click.option("--kinds", default=",".join(KINDS_ORDER), show_default=True, callback=_kinds_list,
                     help="Comma-separated kinds to reindex."),
        click.option("--no-vault-sync", "vault_sync", is_flag=True, flag_value=False, default=True,
                     help="Do not sync the vault files into the database first."),
        click.option("--rebuild-vault", is_flag=True,
                     help="Drop every vault row and write it again from its file (repairs rows edited in the "
                          "database; notes are missing from recall meanwhile)."),
    ])


class LineProgress:
    """Plain progress lines: when a kind starts, then every ``every_s`` seconds or ``every_pages`` pages."""

    def __init__(self, stream: IO[str], every_s: float = 5.0, every_pages: int = 50) -> None:
        self.stream, self.every_s, self.every_pages = stream, every_s, every_pages
        self.totals: dict[str, int] = {}
        self.scanned: dict[str, int] = {}
        self._kind = ""
        self._pages = 0
        self._last = time.monotonic()

    def _line(self, text: str) -> None:
        click.echo(text, file=self.stream)

    def message(self, text: str) -> None:
        self._line(text)

    def begin(self, totals: dict[str, int], resumed: bool) -> None:
        self.totals, self.scanned = totals, {k: 0 for k in totals}
        self._last = time.monotonic()

    def advance(self, step: ReindexStep) -> None:
        if not step.kind:
            return
        self.scanned[step.kind] = self.scanned.get(step.kind, 0) + step.scanned
        self._pages += 1
        now = time.monotonic()
        if step.kind != self._kind:
            self._kind = step.kind
            self._line(f"{step.kind}: reindexing {self.totals.get(step.kind, 0)} items")
        elif now - self._last >= self.every_s or self._pages >= self.every_pages:
            self._line(f"{step.kind}: scanned {self.scanned[step.kind]} of {self.totals.get(step.kind, 0)}")
        else:
            return
        self._last, self._pages = now, 0

    def end(self) -> None:
        pass


class RichProgress:
    """One progress bar over every kind (drawn on a terminal only)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)
        self.bar: Any = None
        self.task: Any = None

    def message(self, text: str) -> None:
        self.console.print(text)

    def begin(self, totals: dict[str, int], resumed: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.console, transient=False)
        self.bar.start()
        # A resumed run does not know how much the killed one did: the bar starts at 0 and jumps
        # to the end when the walk finishes.
        self.task = self.bar.add_task("reindex" + (" (resumed)" if resumed else ""), total=sum(totals.values()))

    def advance(self, step: ReindexStep) -> None:
        if self.bar is not None and step.kind:
            self.bar.update(self.task, advance=step.scanned, description=step.kind)

    def end(self) -> None:
        if self.bar is not None:
            total = self.bar.tasks[0].total
            self.bar.update(self.task, completed=total)
            self.bar.stop()
            self.bar = None


def _summary_text(d: dict[str, Any]) -> None:
    emb = "no embedder (keyword only)" if d["embedder"] is None else f"embedder {d['embedder']}"
    click.echo(f"reindexed with {emb} in {d['seconds']:.2f}s" + (", resumed from checkpoint" if d["resumed"] else "")
               + (", full" if d["full"] else ""))
    for kind, t in d["kinds"].items():
        click.echo(f"  {kind}: scanned {t['scanned']}, indexed {t['indexed']}, removed {t['removed']}, "
                   f"unchanged {t['unchanged']}")
    click.echo(f"  items in the index: {d['items']}")


@main.command()
@config_option
@json_option
@reindex_scope_options
@boundary
def reindex(config_path: str, as_json: bool, full: bool, kinds: tuple[str, ...], vault_sync: bool,
            rebuild_vault: bool) -> None:
    """Sync the vault, then bring the recall index in line with the database.

    \b
    Incremental: items whose content and embedder are unchanged are skipped;
    --full re-embeds everything. It checkpoints every page: killed, the next
    run resumes where it stopped. A live service may keep writing to the same
    database meanwhile. Run it after changing recall.embedder, hash_dim,
    event_text_fields or head_weight. Exit 0 when done; 1 with one line saying
    why otherwise (invalid config, database unreachable, embedder unavailable);
    2 for invalid options.
    """
    if rebuild_vault and not vault_sync:
        raise click.UsageError("--rebuild-vault and --no-vault-sync contradict each other")
    cfg = load(config_path)
    progress: Any = RichProgress() if not as_json and sys.stdout.isatty() else \
        LineProgress(sys.stderr if as_json else sys.stdout)
    options = ReindexOptions(kinds=kinds, full=full, vault_sync=vault_sync, rebuild_vault=rebuild_vault)
    try:
        summary: ReindexSummary = run_reindex(cfg, options, progress)
    except KeyboardInterrupt:
        click.echo("interrupted: the work done so far is checkpointed; run again to resume", err=True)
        sys.exit(130)
    emit(summary.as_dict(), as_json, _summary_text)
