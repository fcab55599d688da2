"""The ``audit:`` config section → :class:`AuditConfig` (the log itself is ``memory._audit``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ._config_reader import SectionReader

# How the audit log records a recall's query: its SHA-256 (the default), the text, or nothing.
AUDIT_QUERY_TEXT = ("hash", "text", "none")


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


def read_audit(r: SectionReader, base: Path, queue_path: Path) -> AuditConfig:
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
