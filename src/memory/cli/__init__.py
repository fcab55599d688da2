"""The ``memory`` command.

Library errors become CLI errors only here, at the command boundary: a
:class:`~memory.MemoryServiceError` is printed as one clear line and exits with status 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from .._config import Config, load_config
from .._errors import MemoryServiceError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_CONFIG = "config/memory.yaml"


def config_option(fn: F) -> F:
    """``--config PATH``: the YAML file (default config/memory.yaml, or $MEMORY_CONFIG)."""
    return click.option("--config", "config_path", default=DEFAULT_CONFIG, envvar="MEMORY_CONFIG",
                        show_default=True, type=click.Path(dir_okay=False),
                        help="Path to memory.yaml.")(fn)


def json_option(fn: F) -> F:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(fn)


def boundary(fn: F) -> F:
    """Turn library errors into one clean CLI error."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MemoryServiceError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper  # type: ignore[return-value]


def load(config_path: str) -> Config:
    cfg = load_config(config_path)
    logging.basicConfig(level=cfg.logging.level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return cfg


def emit(data: Any, as_json: bool, text: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        text(data)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memory")
def main() -> None:
    """memory: fail-open persistence for chat and agent pipelines."""


@main.group()
def db() -> None:
    """Database schema maintenance."""


@contextlib.contextmanager
def open_store(config_path: str) -> Iterator[tuple[Config, Any]]:
    """The configured store, disposed afterwards (for commands that need no service)."""
    from ..store import create_store

    cfg = load(config_path)
    store = create_store(cfg.database)
    try:
        yield cfg, store
    finally:
        store.dispose()


@db.command("upgrade")
@config_option
@boundary
def db_upgrade(config_path: str) -> None:
    """Bring the database schema to the newest revision (idempotent)."""
    with open_store(config_path) as (cfg, store):
        store.initialize()
        click.echo(f"{cfg.database.safe_dsn}: schema at revision {store.current_revision()}")


@db.command("current")
@config_option
@boundary
def db_current(config_path: str) -> None:
    """Show the schema revision the database is at."""
    with open_store(config_path) as (_cfg, store):
        click.echo(store.current_revision() or "empty (no schema yet)")


def _settle(svc: Any, wait: float) -> None:
    """Give the writer up to ``wait`` seconds to bring the schema to head and drain what is pending.

    Stops early once the writer has failed an attempt (the database is in trouble: waiting longer
    only delays the answer) — the report then says why.
    """
    import time

    deadline = time.monotonic() + wait
    while not svc.queue.initialized and svc.queue.breaker.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if svc.queue.initialized:
        svc.flush(max(0.0, deadline - time.monotonic()))


def _health_text(out: dict[str, Any]) -> None:
    click.echo(f"memory health: {out['status']} (exit {out['exit_code']})")
    for reason in out["reasons"]:
        click.echo(f"  - {reason}")
    db = out.get("database")
    if db:
        yes = {True: "yes", False: "no", None: "not probed"}
        click.echo(f"  database {db['dsn']}: answers {yes[db['reachable']]}, schema ready {yes[db['schema_ready']]}"
                   + (f" ({db['error']})" if db.get("error") else ""))
    if "pending" in out:
        click.echo(f"  pending records: {out['pending']}")


@main.command()
@config_option
@json_option
@click.option("--wait", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds to let the writer bring the schema to head and drain before reporting.")
def health(config_path: str, as_json: bool, wait: float) -> None:
    """Start the service briefly and report its health; the exit code says how it is.

    \b
    0  ok        schema at head, database answers, nothing waits on disk,
                 nothing dropped or quarantined, no vault conflict.
    1  degraded  memory works (records are accepted and journaled) but needs
                 attention: the database accepts connections and then fails
                 (resets, refuses the login, locked, times out), a backlog,
                 drops, quarantine, conflicts, a memory-only journal. Also
                 "starting": the schema is not at head yet (never "ok" then).
    2  down      memory cannot do its job until someone acts: the config is
                 invalid or the service cannot be built, the service is
                 closed, or the database is unreachable — no connection can
                 be opened at all (nothing listens, unknown host, no route,
                 the SQLite file cannot be opened or created).
    """
    from .._health import probe_database, verdict
    from .._service import MemoryService

    report: dict[str, Any] | None = None
    probe = None
    startup_error: str | None = None
    try:
        cfg = load(config_path)
        # No start-up vault sync: a probe reports the vault's state, it does not change the database.
        svc = MemoryService(cfg, start_vault=False)
    except MemoryServiceError as exc:
        startup_error = str(exc)
    except Exception as exc:  # noqa: BLE001 - "cannot start" is an answer (down), not a traceback
        startup_error = f"{type(exc).__name__}: {exc}"
    else:
        try:
            _settle(svc, wait)
            report = svc.health()
            if not report["database"]["reachable"]:
                # health() skips the probe while the breaker is open; down vs degraded needs it.
                probe = probe_database(svc.store, cfg.database.url.password)
                report["database"]["connectable"] = probe.connected
                report["database"]["error"] = report["database"].get("error") or probe.error
        finally:
            svc.close(timeout=2.0)
    v = verdict(report, probe, startup_error)
    out: dict[str, Any] = {"status": v.status, "exit_code": v.exit_code, "reasons": list(v.reasons)}
    if report is not None:
        out.update({k: val for k, val in report.items() if k not in ("status", "warnings")})
        out["service_status"] = report["status"]
    emit(out, as_json, _health_text)
    sys.exit(v.exit_code)


from . import _queue_cmds  # noqa: E402,F401  (registers `queue` and `dead-letter`)
from . import _demo  # noqa: E402,F401  (registers `demo`)
from . import _vault_cmds  # noqa: E402,F401  (registers `vault`)
from . import _recall_cmds  # noqa: E402,F401  (registers `recall` and `reindex`)
from . import _logs_cmds  # noqa: E402,F401  (registers `logs`)
from . import _decay_cmds  # noqa: E402,F401  (registers `decay`, `forget` and `restore`)

__all__ = ["main"]
