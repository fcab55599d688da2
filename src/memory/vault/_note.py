"""A vault document as the rest of the package sees it (``Note``), a sync's report, and the
byte-level rules every read applies: UTF-8 with a replacement fallback (reported, not refused),
binary files skipped, cached paths checked to stay inside the vault."""

from __future__ import annotations

import dataclasses
from typing import Any

from ._layout import key_of
from ._parse import Parsed, parse
from ._scan import digest_of


@dataclasses.dataclass(frozen=True)
class Note:
    """One vault document, parsed. ``content`` is the body without front matter."""

    key: str
    kind: str  # "config" or "knowledge"
    category: str
    path: str  # relative to the vault root, POSIX separators
    title: str
    content: str
    metadata: dict[str, Any]
    tags: tuple[str, ...] = ()
    headings: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    digest: str = ""
    invalid: str | None = None
    conflict_path: str | None = None  # set when a write went to a conflict copy instead


@dataclasses.dataclass(frozen=True)
class SyncReport:
    new: int
    modified: int
    moved: int
    deleted: int
    unchanged: int
    invalid: tuple[tuple[str, str], ...]  # (path, why): not read, or not stored in the database
    database_ok: bool
    seconds: float


def decode(data: bytes) -> tuple[str, str | None]:
    try:
        return data.decode("utf-8").lstrip("\ufeff"), None
    except UnicodeDecodeError as exc:
        return data.decode("utf-8", "replace"), f"not valid UTF-8 (byte {exc.start}); decoded with replacement"


def binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def inside(rel: object) -> bool:
    """A relative path that names something below the vault root (for paths read from caches)."""
    return isinstance(rel, str) and bool(rel) and not rel.startswith("/") and ".." not in rel.split("/")


def to_note(rel: str, p: Parsed, digest: str, problem: str | None = None, conflict: str | None = None) -> Note:
    kind, key, category = key_of(rel)
    invalid = "; ".join(x for x in (problem, p.invalid) if x) or None
    return Note(key, kind, category, rel, p.title, p.body, p.metadata, p.tags, p.headings, p.links, digest,
                invalid, conflict)


def note_from_bytes(rel: str, data: bytes) -> Note:
    """The note a file's bytes hold (the caller has checked ``binary``)."""
    text, problem = decode(data)
    return to_note(rel, parse(text, rel), digest_of(data), problem)
