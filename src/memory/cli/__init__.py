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


@main.command()
@config_option
@json_option
@boundary
def health(config_path: str, as_json: bool) -> None:
    """Start the service briefly and print its health report."""
    from .._service import MemoryService

    with MemoryService(load(config_path)) as svc:
        svc.flush(2.0)
        report = svc.health()
    emit(report, as_json, lambda r: click.echo(json.dumps(r, indent=2, default=str)))


from . import _queue_cmds  # noqa: E402,F401  (registers `queue` and `dead-letter`)
from . import _demo  # noqa: E402,F401  (registers `demo`)
from . import _vault_cmds  # noqa: E402,F401  (registers `vault`)

__all__ = ["main"]
