"""What the index stores for a note or an event: pure functions from source rows to documents.

A :class:`Document` is the indexable form of one item: its filters (session, time), a ``head``
(a note's title, tags and headings: weighed ``head_weight`` times in keyword search) and a
``body``. Its ``digest`` covers everything the stored index row is derived from, including the
head weight, so an item is re-indexed exactly when the row would come out different; the
embedder's identity is compared separately (see ``needs_index``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence

import numpy as np

from ..store._recall import KIND_EVENT, KIND_NOTE, IndexedMeta, IndexRow
from ._embed import Embedder
from ._extract import DEFAULT_FIELD_PATHS, FieldPath, event_text
from ._text import document_terms


@dataclasses.dataclass(frozen=True)
class Document:
    kind: str
    item_id: str
    session_key: str | None
    ts: float | None
    title: str | None
    head: str
    body: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.item_id)

    @property
    def text(self) -> str:
        """The text a snippet is cut from: a note's body, an event's text."""
        return self.body

    @property
    def embed_text(self) -> str:
        return f"{self.head}\n{self.body}" if self.head else self.body

    def digest(self, head_weight: int) -> str:
        h = hashlib.sha256()
        for part in (self.kind, self.item_id, self.session_key or "", repr(self.ts), self.title or "", self.head,
                     self.body, str(head_weight)):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return h.hexdigest()

    def terms(self, head_weight: int) -> str:
        return document_terms(self.head, self.body, head_weight=head_weight)


def _strings(value: str | None) -> list[str]:
    """A JSON list column (tags, headings) as strings; anything unreadable contributes nothing."""
    if not value:
        return []
    try:
        data = json.loads(value)
    except (ValueError, TypeError, RecursionError):
        return []
    return [str(x) for x in data if isinstance(x, (str, int, float))] if isinstance(data, list) else []


def note_document(key: str, title: str | None, content: str | None, tags: str | None,
                  headings: str | None) -> Document:
    """A knowledge note: head = title, tags and headings; body = the Markdown body."""
    head = " ".join(x for x in [title or "", *_strings(tags), *_strings(headings)] if x)
    return Document(KIND_NOTE, key, None, None, title or key, head, content or "")


def event_document(event_id: str, session_key: str | None, ts: float | None, obs_json: str | None,
                   paths: tuple[FieldPath, ...] = DEFAULT_FIELD_PATHS) -> Document | None:
    """An event with text at one of ``paths``, or None (an event without text is not indexed)."""
    text = event_text(obs_json, paths)
    if text is None:
        return None
    return Document(KIND_EVENT, event_id, session_key, None if ts is None else float(ts), None, "", text)


def needs_index(doc: Document, meta: IndexedMeta | None, head_weight: int, embedder: str | None) -> bool:
    """True unless the stored row was made from this exact content by this embedder."""
    return meta is None or meta.digest != doc.digest(head_weight) or meta.embedder != embedder


def vector_bytes(vec: np.ndarray) -> bytes | None:
    """Little-endian float32 bytes; None for a zero (or non-finite) vector: nothing to search by."""
    v = np.asarray(vec, dtype="<f4").reshape(-1)
    if not np.all(np.isfinite(v)) or not np.any(v):
        return None
    return v.tobytes()


def vector_from_bytes(data: bytes | None, dim: int) -> np.ndarray | None:
    if data is None or len(data) != 4 * dim:
        return None
    return np.frombuffer(bytes(data), dtype="<f4")


def embedder_id(embedder: Embedder | None) -> str | None:
    """What the index stores as a vector's maker: name *and* dimension. A hash embedder with another
    ``hash_dim`` makes incomparable vectors under the same name, so the name alone is not enough."""
    return None if embedder is None else f"{embedder.name}/{embedder.dim}"


def index_rows(docs: Sequence[Document], embedder: Embedder | None, head_weight: int) -> list[IndexRow]:
    """The rows to store for ``docs``, vectors included (one ``embed`` call for the batch)."""
    if not docs:
        return []
    vectors: Sequence[np.ndarray | None]
    if embedder is None:
        vectors = [None] * len(docs)
    else:
        vectors = list(embedder.embed([d.embed_text for d in docs]))
    name = embedder_id(embedder)
    dim = None if embedder is None else embedder.dim
    out = []
    for d, v in zip(docs, vectors):
        out.append(IndexRow(d.kind, d.item_id, d.session_key, d.ts, d.title, d.digest(head_weight),
                            d.terms(head_weight), name, dim, None if v is None else vector_bytes(v)))
    return out
