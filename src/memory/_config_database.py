"""The ``database:`` section → :class:`DatabaseConfig`, and the one place that knows which parts
of a DSN are secret.

The DSN password never appears in a repr, a log line, a health report or an error message:
:attr:`DatabaseConfig.safe_dsn` (:func:`mask_dsn`) is the only form that leaves the config.
"The password" is the URL's password *and* every query parameter that names a secret
(``?password=``, ``?passwd=``, ``?pwd=``, ``?token=``, ``?api_key=``, ... in any case); the store
also scrubs those values from any driver message it passes on (:func:`redact`).
``MEMORY_DATABASE_DSN`` (or ``database.dsn_env`` naming another variable) overrides the DSN.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
import warnings
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from ._config_reader import SectionReader, resolve_path

DSN_ENV = "MEMORY_DATABASE_DSN"
# A query parameter whose name says it holds a secret. Deliberately broad: masking a harmless
# value (``ssl_key``, a file path) costs nothing; printing a token costs a rotation.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature", re.IGNORECASE)
MASK = "***"


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    dsn: str = dataclasses.field(repr=False)
    pool_size: int = 5
    max_overflow: int = 10
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    pool_recycle: int = 3600
    sqlite_busy_timeout: float = 30.0

    @property
    def url(self) -> URL:
        return make_url(self.dsn)

    @property
    def safe_dsn(self) -> str:
        return mask_dsn(self.dsn)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value in the DSN, in the forms a message could show it (for :func:`redact`)."""
        return dsn_secrets(self.dsn)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def __repr__(self) -> str:
        return (f"DatabaseConfig(dsn={self.safe_dsn!r}, pool_size={self.pool_size}, "
                f"max_overflow={self.max_overflow}, connect_timeout={self.connect_timeout})")


def is_secret_param(name: str) -> bool:
    """True if a DSN query parameter of this name holds a secret (password, token, key, ...)."""
    return bool(_SECRET_PARAM.search(name))


def _query_items(url: URL) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for name, value in url.query.items():
        items += [(name, v) for v in ((value,) if isinstance(value, str) else value)]
    return items


def mask_dsn(dsn: str) -> str:
    """The DSN with its password and every secret query parameter replaced by ``***``.

    Unparsable DSNs are masked wholesale (they might be all secret).
    """
    try:
        url = make_url(dsn)
    except Exception:  # noqa: BLE001 - never echo an unparsable secret
        return "<unparsable dsn>"
    base = url.set(query={}).render_as_string(hide_password=True)
    items = _query_items(url)
    if not items:
        return base
    query = "&".join(f"{urllib.parse.quote_plus(k)}={MASK if is_secret_param(k) else urllib.parse.quote_plus(v)}"
                     for k, v in items)
    return f"{base}?{query}"


def dsn_secrets(dsn: str) -> tuple[str, ...]:
    """The secret values of a DSN (password, secret query parameters), raw and URL-encoded."""
    try:
        url = make_url(dsn)
    except Exception:  # noqa: BLE001 - nothing parsable to pick out
        return ()
    values = [url.password] if url.password else []
    values += [v for k, v in _query_items(url) if is_secret_param(k) and v]
    found: list[str] = []
    for v in map(str, values):
        for form in (v, urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v)):
            if form not in found:
                found.append(form)
    # Longest first, so a secret that contains another is replaced whole.
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def read_database(r: SectionReader, base: Path) -> DatabaseConfig:
    dsn_env = r.str("dsn_env", DSN_ENV)
    env_dsn = os.environ.get(dsn_env)
    if env_dsn:
        r.raw("dsn", None)  # overridden, but a known key all the same: no "unknown key" warning
        dsn = env_dsn
    else:
        dsn = r.str("dsn", "sqlite:///.memory/memory.db")
    try:
        url = make_url(dsn)
    except Exception:  # noqa: BLE001 - the message must not echo the DSN (it may hold a password)
        r.fail("dsn", "an SQLAlchemy URL such as sqlite:///path.db or mysql+pymysql://user@host/db",
               "<unparsable dsn>")
    backend = url.get_backend_name()
    if backend not in ("sqlite", "mysql", "mariadb"):
        r.fail("dsn", "a sqlite:// or mysql+pymysql:// URL", mask_dsn(dsn))
    if backend == "sqlite" and (not url.database or url.database == ":memory:"):
        # A private in-memory database exists in one connection only, and the writer thread and
        # the readers use a pool of them: each would see its own empty database (and the engine
        # refuses the pool options for it outright, so the service could not even be built).
        r.fail("dsn", "a SQLite file (an in-memory database is private to one connection; the writer "
               "and the readers use several)", mask_dsn(dsn))
    if backend == "sqlite" and url.database and not url.database.startswith("file:"):
        url = url.set(database=str(resolve_path(base, url.database)))
    if backend in ("mysql", "mariadb"):
        url = url.set(drivername="mysql+pymysql")
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
    problem = connect_args_problem(url)
    if problem is not None:
        # Caught here, not when the store builds its engine: the service's constructor must not
        # raise anything but ConfigError, and the driver's own text may echo a parameter's value.
        r.fail("dsn", "a DSN whose query parameters the driver accepts",
               f"{mask_dsn(dsn)} ({redact(problem, dsn_secrets(dsn))})")
    return DatabaseConfig(
        dsn=url.render_as_string(hide_password=False),
        pool_size=r.int("pool_size", 5, 1),
        max_overflow=r.int("max_overflow", 10, 0),
        connect_timeout=r.float("connect_timeout", 5.0),
        read_timeout=r.float("read_timeout", 30.0),
        write_timeout=r.float("write_timeout", 30.0),
        pool_recycle=r.int("pool_recycle", 3600, 1),
        sqlite_busy_timeout=r.float("sqlite_busy_timeout", 30.0),
    )


def connect_args_problem(url: URL) -> str | None:
    """What the dialect says when turning the URL into driver arguments, or None if it is fine.

    The same conversion the engine does on creation (``port=abc``, ``connect_timeout=soon``),
    without connecting.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the engine repeats any warning when it is created
            dialect = url.get_dialect()
            dialect(dbapi=dialect.import_dbapi()).create_connect_args(url)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad DSN
        return f"{type(exc).__name__}: {exc}"
    return None
