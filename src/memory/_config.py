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
  :attr:`DatabaseConfig.safe_dsn` is the only form that leaves the config (``memory._config_database``
  decides what is secret).
* ``recall:`` (hybrid keyword + vector search) becomes :class:`RecallConfig`. The older
  free-form ``vector:`` section is still accepted and kept as :attr:`Config.vector` (the reindex
  tool reads it); a non-empty one is reported as replaced by ``recall:``.
* ``audit:`` (the JSONL audit log of recalls, forgets, outages, ...) becomes :class:`AuditConfig`.
* ``graph:`` (typed edges between items, ``service.graph``) becomes :class:`GraphConfig`; the
  recall boost by graph neighbours is ``recall.graph_boost`` (:class:`GraphBoostConfig`).

This module is the loader and the home of the small sections (vault, failure queue, logging);
the others are read beside their plug-in, through one :class:`~memory._config_reader.SectionReader`
(so every message has the same shape): ``database:`` in ``_config_database``, ``recall:`` in
``index._config``, ``graph:`` in ``_graph_config``, ``audit:`` in ``_audit_config``, ``decay:`` in
``decay._config``. Their types are re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ._audit_config import AUDIT_QUERY_TEXT, AuditConfig, read_audit
from ._config_database import (DSN_ENV, MASK, DatabaseConfig, connect_args_problem, dsn_secrets, is_secret_param,
                               mask_dsn, read_database, redact)
from ._config_reader import SectionReader, parse_duration
from ._errors import ConfigError
from ._graph_config import GraphConfig, read_graph
from ._health_config import HealthConfig, read_health
from .index._config import EMBEDDERS, GraphBoostConfig, RecallConfig, read_recall


if TYPE_CHECKING:
    from .decay._config import DecayConfig

# Re-exported: each section's types and helpers live beside their reader; this module is where
# the rest of the package (and tests) import them from.
__all__ = ["AUDIT_QUERY_TEXT", "DSN_ENV", "EMBEDDERS", "FSYNC_POLICIES", "MASK", "AuditConfig", "Config",
           "DatabaseConfig", "FailureQueueConfig", "GraphBoostConfig", "GraphConfig", "HealthConfig", "LoggingConfig",
           "RecallConfig", "VaultConfig", "connect_args_problem", "dsn_secrets", "is_secret_param", "load_config", "mask_dsn",
           "parse_config", "parse_duration", "redact"]

# The name ``memory.decay._config`` imports the section reader by.
_Reader = SectionReader

log = logging.getLogger("memory.config")

FSYNC_POLICIES = ("always", "interval", "never")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
class Config:
    database: DatabaseConfig
    vault: VaultConfig
    failure_queue: FailureQueueConfig
    logging: LoggingConfig
    vector: Mapping[str, Any]
    graph: GraphConfig
    decay: DecayConfig  # a mapping given by hand is validated into one (see __post_init__)
    health: HealthConfig  # a mapping given by hand is read with the defaults for what it omits
    # A default, so a Config built by hand (tests, embedding applications) needs no recall section.
    recall: RecallConfig = dataclasses.field(default_factory=RecallConfig)
    audit: AuditConfig = dataclasses.field(default_factory=AuditConfig)
    source: str = "<mapping>"
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A Config built by hand may still pass the old free mapping (``graph={}``): its defaults.
        if not isinstance(self.graph, GraphConfig):
            object.__setattr__(self, "graph", GraphConfig(**dict(self.graph or {})))
        if not isinstance(self.health, HealthConfig):
            object.__setattr__(self, "health", HealthConfig(**dict(self.health or {})))
        from .decay._config import read_decay_config  # imports this module: not at the top

        object.__setattr__(self, "decay", read_decay_config(self.decay or {}, source=self.source))


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


def _failure_queue(r: SectionReader, base: Path) -> FailureQueueConfig:
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
    readers = {name: SectionReader(source, name, data.get(name)) for name in _SECTIONS}
    database = read_database(readers["database"], base)
    v = readers["vault"]
    vault = VaultConfig(root_path=v.path("root_path", "vault", base), watch=v.bool("watch", True),
                        debounce_ms=v.int("debounce_ms", 200, 0),
                        max_file_size_kb=v.int("max_file_size_kb", 1024, 1))
    fq = _failure_queue(readers["failure_queue"], base)
    lg = readers["logging"]
    logging_cfg = LoggingConfig(level=lg.str("level", "WARNING", ("DEBUG", "INFO", "WARNING", "ERROR")),
                                warn_interval_s=lg.float("warn_interval_s", 30.0, 0.0, strict=False))
    recall = read_recall(readers["recall"])
    audit = read_audit(readers["audit"], base, fq.path)
    graph = read_graph(readers["graph"])
    health = read_health(readers["health"])
    free = {name: dict(readers[name].data) for name in ("vector", "decay")}
    from .decay._config import read_decay_config, unknown_keys  # imports this module: not at the top

    free["decay"] = read_decay_config(free["decay"], source=source)  # type: ignore[assignment]
    unknown = [k for k in data if k not in _SECTIONS] + unknown_keys(readers["decay"].data)
    for name in ("database", "vault", "recall", "failure_queue", "logging", "audit", "graph", "health"):
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
                  audit=audit, graph=graph, health=health, source=source, warnings=tuple(map(str, unknown + replaced)), **free)


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
