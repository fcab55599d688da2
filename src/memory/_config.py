"""Configuration: YAML (or a mapping) → validated, typed, immutable objects.

Loading happens once; everything downstream receives typed objects and never re-reads YAML.

* ``${VAR}`` and ``${VAR:-default}`` are substituted in string values after parsing.
* ``MEMORY_DATABASE_DSN`` (or ``database.dsn_env`` naming another variable) overrides the DSN,
  so no secret has to live in the file.
* Relative paths (SQLite file, vault root, queue folder) resolve against the folder holding
  the config file, or the current directory for a mapping; the service never depends on the
  directory it happens to be started from.
* A bad value raises one :class:`ConfigError` naming file, key path, expectation and finding.
  Unknown keys are logged as a warning naming them (a typo must not take memory down).
* The DSN password never appears in a repr, a log line, a health report or an error message:
  :attr:`DatabaseConfig.safe_dsn` is the only form that leaves this module. "The password" is
  the URL's password *and* every query parameter that names a secret (``?password=``,
  ``?passwd=``, ``?pwd=``, ``?token=``, ``?api_key=``, ... in any case); the store also scrubs
  those values from any driver message it passes on (:func:`redact`).
* ``recall:`` (hybrid keyword + vector search) becomes :class:`RecallConfig`. The older
  free-form ``vector:`` section is still accepted and kept as :attr:`Config.vector` (the reindex
  tool reads it); a non-empty one is reported as replaced by ``recall:``.
* ``audit:`` (the JSONL audit log of recalls, forgets, outages, ...) becomes :class:`AuditConfig`.
* ``graph:`` (typed edges between items, ``service.graph``) becomes :class:`GraphConfig`; the
  recall boost by graph neighbours is ``recall.graph_boost`` (:class:`GraphBoostConfig`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import urllib.parse
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml
from sqlalchemy.engine import URL, make_url

from ._errors import ConfigError
from .index._extract import DEFAULT_TEXT_FIELDS, FieldPath, parse_field_paths
from .index._fusion import KINDS, FusionParams


if TYPE_CHECKING:
    from .decay._config import DecayConfig

log = logging.getLogger("memory.config")

DSN_ENV = "MEMORY_DATABASE_DSN"
FSYNC_POLICIES = ("always", "interval", "never")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# A query parameter whose name says it holds a secret. Deliberately broad: masking a harmless
# value (``ssl_key``, a file path) costs nothing; printing a token costs a rotation.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature", re.IGNORECASE)
MASK = "***"
EMBEDDERS = ("hash", "minilm", "none")
# How the audit log records a recall's query: its SHA-256 (the default), the text, or nothing.
AUDIT_QUERY_TEXT = ("hash", "text", "none")
# Duration units of ``recall.recency_half_life`` (the spellings recall's ``since`` accepts too).
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|wks)",
                       re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600,
           "d": 86400, "day": 86400, "days": 86400, "w": 604800, "wk": 604800, "wks": 604800}


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


@dataclasses.dataclass(frozen=True)
class VaultConfig:
    root_path: Path
    watch: bool = True
    debounce_ms: int = 200
    max_file_size_kb: int = 1024


@dataclasses.dataclass(frozen=True)
class FailureQueueConfig:
    path: Path
    max_in_memory: int = 10_000
    spill_batch_size: int = 1_000
    batch_size: int = 1_000
    flush_interval_ms: int = 50
    max_dump_file_size_mb: float = 16.0
    max_dump_backups: int = 0
    max_disk_mb: float = 1024.0
    max_retries: int = 5
    retry_base_delay_s: float = 0.2
    retry_max_delay_s: float = 30.0
    breaker_threshold: int = 3
    fsync: str = "interval"
    fsync_interval_ms: int = 200
    dead_letter_max_mb: float = 64.0


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    level: str = "WARNING"
    warn_interval_s: float = 30.0


@dataclasses.dataclass(frozen=True)
class GraphBoostConfig:
    """``recall.graph_boost``: neighbours of the ``top`` hits within ``depth`` hops join the
    results with ``score × (the hit's score) / distance`` added (see ``memory.index._recall``)."""

    enabled: bool = False
    depth: int = 1
    score: float = 0.3
    top: int = 5


@dataclasses.dataclass(frozen=True)
class GraphConfig:
    """The ``graph:`` section: typed, weighted edges between items (``service.graph``).

    ``enabled`` False: nothing is written to the graph and ``service.graph`` answers empty.
    ``turn_edges``: a turn links to its input event (``input``) and its output (``output``);
    ``link_edges``: a note links to the notes its body links to (``links_to``).
    """

    enabled: bool = True
    max_edges_per_item: int = 20
    turn_edges: bool = True
    link_edges: bool = True


@dataclasses.dataclass(frozen=True)
class RecallConfig:
    """The ``recall:`` section: hybrid keyword + vector search over notes and events.

    ``min_similarity`` None means the embedder's own floor applies. ``recency_half_life_s`` is
    read from the key ``recency_half_life`` (seconds, or a duration such as ``7d``).
    """

    enabled: bool = True
    embedder: str = "hash"
    hash_dim: int = 256
    event_text_fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS
    default_k: int = 10
    candidates: int = 50
    rrf_k: float = 60.0
    keyword_weight: float = 1.0
    vector_weight: float = 1.0
    min_similarity: float | None = None
    recency_weight: float = 0.3
    recency_half_life_s: float = 604800.0
    recency_kinds: tuple[str, ...] = ("event",)
    head_weight: int = 3
    max_fresh: int = 500
    indexer_batch_size: int = 256
    indexer_interval_ms: int = 500
    embedder_threads: int = 0  # minilm: torch's CPU threads (process-wide); 0 leaves torch's default
    graph_boost: GraphBoostConfig = GraphBoostConfig()

    def fusion_params(self) -> FusionParams:
        """The weights fusion uses. Raises ``ValueError`` only for a hand-built, invalid instance."""
        return FusionParams(rrf_k=self.rrf_k, keyword_weight=self.keyword_weight, vector_weight=self.vector_weight,
                            recency_weight=self.recency_weight, half_life_s=self.recency_half_life_s,
                            recency_kinds=frozenset(self.recency_kinds))

    def event_field_paths(self) -> tuple[FieldPath, ...]:
        """``event_text_fields`` split into the path tuples ``event_text`` takes."""
        return parse_field_paths(self.event_text_fields)


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """The ``audit:`` section: one JSON line per recall, forget, outage, ... (see ``memory._audit``).

    ``path`` read from a file resolves against the file's folder; this default (for a Config built
    by hand) is relative to the working directory, like the failure queue's default folder.
    ``queue_size`` bounds the lines waiting for the writer thread (beyond it lines are dropped and
    counted). ``query_text``: ``hash`` (SHA-256 of the query), ``text`` (the query) or ``none``.
    """

    enabled: bool = True
    path: Path = Path(".memory/audit.jsonl")
    max_mb: float = 16.0
    backups: int = 5
    queue_size: int = 10_000
    query_text: str = "hash"

    @property
    def max_bytes(self) -> int:
        """The size at which the file rotates (at least one byte)."""
        return max(1, int(self.max_mb * (1 << 20)))


@dataclasses.dataclass(frozen=True)
class Config:
    database: DatabaseConfig
    vault: VaultConfig
    failure_queue: FailureQueueConfig
    logging: LoggingConfig
    vector: Mapping[str, Any]
    graph: GraphConfig
    decay: DecayConfig  # a mapping given by hand is validated into one (see __post_init__)
    health: Mapping[str, Any]
    # A default, so a Config built by hand (tests, embedding applications) needs no recall section.
    recall: RecallConfig = dataclasses.field(default_factory=RecallConfig)
    audit: AuditConfig = dataclasses.field(default_factory=AuditConfig)
    source: str = "<mapping>"
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A Config built by hand may still pass the old free mapping (``graph={}``): its defaults.
        if not isinstance(self.graph, GraphConfig):
            object.__setattr__(self, "graph", GraphConfig(**dict(self.graph or {})))
        from .decay._config import read_decay_config  # imports this module: not at the top

        object.__setattr__(self, "decay", read_decay_config(self.decay or {}, source=self.source))


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


class _Reader:
    """Walks one section, converting values and remembering which keys were used."""

    def __init__(self, source: str, section: str, data: Any) -> None:
        self.source, self.section = source, section
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.fail("", "a mapping", data)
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()
        self.nested_unknown: list[str] = []  # unknown keys of sub-sections read through this one

    def fail(self, key: str, expected: str, found: Any, detail: str = "") -> NoReturn:
        path = f"{self.section}.{key}" if key else self.section
        why = f" ({detail})" if detail else ""
        raise ConfigError(f"{self.source}: {path}: expected {expected}, got {found!r}{why}",
                          source=self.source, key=path)

    def raw(self, key: str, default: Any) -> Any:
        self.used.add(key)
        value = self.data.get(key, default)
        return default if value is None else value

    def int(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(key, default)
        expected = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"
        if isinstance(value, bool):
            self.fail(key, expected, value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
            self.fail(key, expected, value)
        return value

    def float(self, key: str, default: float, minimum: float = 0.0, strict: bool = True) -> float:
        value = self.raw(key, default)
        expected = f"a number {'>' if strict else '>='} {minimum:g}"
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                self.fail(key, expected, value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, expected, value)
        if value < minimum or (strict and value == minimum):
            self.fail(key, expected, value)
        return float(value)

    def number(self, key: str, default: float, low: float, high: float = math.inf,
               low_open: bool = False, expected: str = "") -> float:
        """A finite number in ``[low, high]`` (``(low, high]`` if ``low_open``); numeric strings
        count (``${VAR}`` substitution yields strings)."""
        if not expected:
            if high == math.inf:
                expected = f"a number {'>' if low_open else '>='} {_num(low)}"
            else:
                expected = f"a number in {'(' if low_open else '['}{_num(low)}, {_num(high)}]"
        found = self.raw(key, default)
        if isinstance(found, bool) or not isinstance(found, (int, float, str)):
            self.fail(key, expected, found)
        try:
            value = float(found)
        except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
            self.fail(key, expected, found)
        if not math.isfinite(value) or not low <= value <= high or (low_open and value == low):
            self.fail(key, expected, found)
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        if not isinstance(value, bool):
            self.fail(key, "true or false", value)
        return value

    def str(self, key: str, default: str, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "a non-empty string", value)
        if choices and value not in choices:
            self.fail(key, "one of " + ", ".join(choices), value)
        return value

    def path(self, key: str, default: str, base: Path) -> Path:
        return _resolve(base, self.str(key, default))

    def unknown(self) -> list[str]:
        return [f"{self.section}.{k}" for k in self.data if k not in self.used] + self.nested_unknown


def _num(x: float) -> str:
    """A bound as a reader would write it: 1000000, not 1e+06."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p).resolve()


def _substitute(value: Any, source: str, key: str) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            found = os.environ.get(name)
            if found is not None and (found != "" or default is None):
                return found
            if default is not None:
                return default
            raise ConfigError(f"{source}: {key}: expected environment variable {name} to be set, "
                              f"got nothing (use ${{{name}:-default}} for a fallback)",
                              source=source, key=key)
        return _VAR.sub(repl, value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, source, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _database(r: _Reader, base: Path) -> DatabaseConfig:
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
        url = url.set(database=str(_resolve(base, url.database)))
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


def _failure_queue(r: _Reader, base: Path) -> FailureQueueConfig:
    return FailureQueueConfig(
        path=r.path("path", ".memory/queue", base),
        max_in_memory=r.int("max_in_memory", 10_000, 1),
        spill_batch_size=r.int("spill_batch_size", 1_000, 1),
        batch_size=r.int("batch_size", 1_000, 1),
        flush_interval_ms=r.int("flush_interval_ms", 50, 1),
        max_dump_file_size_mb=r.float("max_dump_file_size_mb", 16.0),
        max_dump_backups=r.int("max_dump_backups", 0, 0),
        max_disk_mb=r.float("max_disk_mb", 1024.0),
        max_retries=r.int("max_retries", 5, 1),
        retry_base_delay_s=r.float("retry_base_delay_s", 0.2),
        retry_max_delay_s=r.float("retry_max_delay_s", 30.0),
        breaker_threshold=r.int("breaker_threshold", 3, 1),
        fsync=r.str("fsync", "interval", FSYNC_POLICIES),
        fsync_interval_ms=r.int("fsync_interval_ms", 200, 1),
        dead_letter_max_mb=r.float("dead_letter_max_mb", 64.0),
    )


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``3600``, ``45s``, ``30m``, ``12h``, ``7d``, ``2w``
    (``1.5d`` too). Raises ``ValueError`` for anything else, or a result that is not finite and > 0."""
    if isinstance(value, bool):
        raise ValueError("a duration is not true/false")
    if not isinstance(value, (int, float, str)):
        raise ValueError(f"not a duration: {type(value).__name__}")
    m = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    try:
        seconds = float(m.group(1)) * _UNIT_S[m.group(2).lower()] if m else float(value)
    except OverflowError:  # an integer too large for a float
        raise ValueError("duration too large") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be finite and > 0, got {seconds!r} seconds")
    return seconds


def _string_list(r: _Reader, key: str, default: tuple[str, ...], expected: str) -> list[Any]:
    """A YAML list, or one comma-separated string, as a list (items unchecked)."""
    value = r.raw(key, default)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)):
        r.fail(key, expected, value)
    return list(value)


def _recall(r: _Reader) -> RecallConfig:
    enabled, embedder = r.bool("enabled", True), r.str("embedder", "hash", EMBEDDERS)
    hash_dim = r.int("hash_dim", 256, 16, 4096)
    expected = ("a non-empty list of field paths (names joined by '.', e.g. payload.text) "
                "or one comma-separated string")
    try:
        paths = parse_field_paths(_string_list(r, "event_text_fields", DEFAULT_TEXT_FIELDS, expected))
    except ValueError as exc:
        r.fail("event_text_fields", expected, r.data.get("event_text_fields"), str(exc))
    default_k, candidates = r.int("default_k", 10, 1, 1000), r.int("candidates", 50, 1, 10_000)
    rrf_k = r.number("rrf_k", 60.0, 0.0, low_open=True)
    # FusionParams caps the weights at 1e6: the same bound here keeps fusion_params() total.
    keyword_weight, vector_weight = r.number("keyword_weight", 1.0, 0.0, 1e6), r.number("vector_weight", 1.0, 0.0, 1e6)
    # "auto" (or null): the embedder decides its floor; hash and model similarities differ in scale.
    similarity = r.raw("min_similarity", "auto")
    min_similarity = None if isinstance(similarity, str) and similarity.strip().lower() == "auto" else r.number(
        "min_similarity", 0.0, -1.0, 1.0, expected="auto, null or a number in [-1, 1]")
    recency_weight = r.number("recency_weight", 0.3, 0.0, 1.0)
    half_life = r.raw("recency_half_life", 604800.0)
    try:
        half_life_s = parse_duration(half_life)
    except ValueError:
        r.fail("recency_half_life", "a duration > 0: seconds, or a number followed by s, m, h, d or w "
               "(e.g. 7d, 12h, 30m)", half_life)
    expected = "a list of kinds from " + ", ".join(KINDS) + " (may be empty)"
    # An empty list is meaningful (no kind fades with age); a blank string is not (it splits to "").
    kinds = _string_list(r, "recency_kinds", ("event",), expected)
    if any(k not in KINDS for k in kinds):
        r.fail("recency_kinds", expected, r.data.get("recency_kinds"))
    return RecallConfig(
        enabled=enabled, embedder=embedder, hash_dim=hash_dim, event_text_fields=tuple(".".join(p) for p in paths),
        default_k=default_k, candidates=candidates, rrf_k=rrf_k, keyword_weight=keyword_weight,
        vector_weight=vector_weight, min_similarity=min_similarity, recency_weight=recency_weight,
        recency_half_life_s=half_life_s, recency_kinds=tuple(dict.fromkeys(kinds)),
        head_weight=r.int("head_weight", 3, 1, 10), max_fresh=r.int("max_fresh", 500, 0, 100_000),
        indexer_batch_size=r.int("indexer_batch_size", 256, 1, 100_000),
        indexer_interval_ms=r.int("indexer_interval_ms", 500, 10, 3_600_000),
        embedder_threads=r.int("embedder_threads", 0, 0, 256), graph_boost=_graph_boost(r))


def _graph_boost(r: _Reader) -> GraphBoostConfig:
    b = _Reader(r.source, f"{r.section}.graph_boost", r.raw("graph_boost", {}))
    boost = GraphBoostConfig(enabled=b.bool("enabled", False), depth=b.int("depth", 1, 1, 5),
                             score=b.number("score", 0.3, 0.0, 100.0), top=b.int("top", 5, 1, 100))
    r.nested_unknown += b.unknown()
    return boost


def _graph(r: _Reader) -> GraphConfig:
    return GraphConfig(enabled=r.bool("enabled", True),
                       max_edges_per_item=r.int("max_edges_per_item", 20, 1, 100_000),
                       turn_edges=r.bool("turn_edges", True), link_edges=r.bool("link_edges", True))


def _audit(r: _Reader, base: Path, queue_path: Path) -> AuditConfig:
    # By default beside the failure queue's folder (.memory/queue -> .memory/audit.jsonl), so one
    # folder holds all of a deployment's local state, wherever the queue was put.
    default = queue_path.parent / "audit.jsonl"
    return AuditConfig(
        enabled=r.bool("enabled", True),
        path=r.path("path", str(default), base),
        # Fractions allowed: a small file size is how a test (or a tiny device) sees rotation.
        max_mb=r.number("max_mb", 16.0, 0.0, 1_000_000.0, low_open=True),
        backups=r.int("backups", 5, 0, 1000),
        queue_size=r.int("queue_size", 10_000, 1, 10_000_000),
        query_text=r.str("query_text", "hash", AUDIT_QUERY_TEXT),
    )


_SECTIONS = ("database", "vault", "recall", "vector", "failure_queue", "graph", "decay", "health", "logging",
             "audit")


def parse_config(data: Any, *, source: str = "<mapping>", base_dir: Path | None = None) -> Config:
    """Validate a mapping (already parsed YAML) into a :class:`Config`."""
    base = (base_dir or Path.cwd()).resolve()
    if data is None:
        raise ConfigError(f"{source}: expected a YAML mapping with sections such as 'database', "
                          "got an empty document", source=source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: <root>: expected a mapping of sections, got {type(data).__name__}",
                          source=source)
    data = _substitute(dict(data), source, "")
    readers = {name: _Reader(source, name, data.get(name)) for name in _SECTIONS}
    database = _database(readers["database"], base)
    v = readers["vault"]
    vault = VaultConfig(root_path=v.path("root_path", "vault", base), watch=v.bool("watch", True),
                        debounce_ms=v.int("debounce_ms", 200, 0),
                        max_file_size_kb=v.int("max_file_size_kb", 1024, 1))
    fq = _failure_queue(readers["failure_queue"], base)
    lg = readers["logging"]
    logging_cfg = LoggingConfig(level=lg.str("level", "WARNING", ("DEBUG", "INFO", "WARNING", "ERROR")),
                                warn_interval_s=lg.float("warn_interval_s", 30.0, 0.0, strict=False))
    recall = _recall(readers["recall"])
    try:
        recall.fusion_params()
    except ValueError as exc:  # the reader's bounds match FusionParams; this guards their drift
        raise ConfigError(f"{source}: {exc}", source=source, key="recall") from None
    audit = _audit(readers["audit"], base, fq.path)
    graph = _graph(readers["graph"])
    free = {name: dict(readers[name].data) for name in ("vector", "decay", "health")}
    from .decay._config import read_decay_config, unknown_keys  # imports this module: not at the top

    free["decay"] = read_decay_config(free["decay"], source=source)  # type: ignore[assignment]
    unknown = [k for k in data if k not in _SECTIONS] + unknown_keys(readers["decay"].data)
    for name in ("database", "vault", "recall", "failure_queue", "logging", "audit", "graph"):
        unknown += readers[name].unknown()
    if unknown:
        log.warning("%s: unknown config keys ignored (typo?): %s", source, ", ".join(map(str, unknown)))
    replaced: list[str] = []
    if free["vector"]:
        # Old files keep loading (an empty ``vector: {}`` silently); its keys do not configure recall.
        replaced.append("vector")
        log.warning("%s: the vector: section is replaced by recall: (see config/memory.yaml); recall does "
                    "not read its keys (%s)", source, ", ".join(map(str, free["vector"])))
    return Config(database=database, vault=vault, failure_queue=fq, logging=logging_cfg, recall=recall,
                  audit=audit, graph=graph, source=source, warnings=tuple(map(str, unknown + replaced)), **free)


def load_config(path_or_mapping: str | os.PathLike[str] | Mapping[str, Any]) -> Config:
    """Load and validate a config file (or mapping). Raises :class:`ConfigError` on any problem."""
    if isinstance(path_or_mapping, Mapping):
        return parse_config(path_or_mapping)
    path = Path(path_or_mapping)
    source = str(path_or_mapping)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found (looked in {path.resolve()})", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc}", source=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}", source=source) from None
    if data is None:
        raise ConfigError(f"{source}: the config file is empty; expected sections such as 'database' "
                          "and 'failure_queue' (see config/memory.yaml in the project)", source=source)
    return parse_config(data, source=source, base_dir=path.resolve().parent)
