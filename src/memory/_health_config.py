"""The ``health:`` config section → :class:`HealthConfig` (the rules are ``memory._health``).

Thresholds only: what ``health()`` calls worth a look. Each default keeps the strict reading
(``ok`` means nothing at all is waiting); a deployment that tolerates a short backlog or a slow
link raises them instead of ignoring ``degraded``.
"""

from __future__ import annotations

import dataclasses

from ._config_reader import SectionReader


@dataclasses.dataclass(frozen=True)
class HealthConfig:
    """``latency_warn_ms``: a database round trip (a pooled connection, ``SELECT 1`` and the schema
    revision read) slower than this is a warning. ``backlog_warn``: this many records waiting on
    disk for the database (or more) is a warning."""

    latency_warn_ms: float = 1000.0
    backlog_warn: int = 1


def read_health(r: SectionReader) -> HealthConfig:
    return HealthConfig(latency_warn_ms=r.float("latency_warn_ms", 1000.0),
                        backlog_warn=r.int("backlog_warn", 1, 1))
