"""The ``recall:`` config section → :class:`RecallConfig` (with ``recall.graph_boost`` →
:class:`GraphBoostConfig`), read through the loader's :class:`~memory._config_reader.SectionReader`
so a bad value raises the same ``ConfigError`` shape as every other section.

The bounds match what the recall side accepts (``FusionParams`` caps the weights at 1e6, the
embedders' dimensions, ...): a config that loads is one the recall service can run.
"""

from __future__ import annotations

import dataclasses

from .._config_reader import SectionReader, parse_duration
from .._errors import ConfigError
from ._extract import DEFAULT_TEXT_FIELDS, FieldPath, parse_field_paths
from ._fusion import KINDS, FusionParams

EMBEDDERS = ("hash", "minilm", "none")


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


def read_recall(r: SectionReader) -> RecallConfig:
    """The ``recall:`` section. Raises ``ConfigError`` naming the file, ``recall.<key>``, the
    expectation and the finding."""
    enabled, embedder = r.bool("enabled", True), r.str("embedder", "hash", EMBEDDERS)
    hash_dim = r.int("hash_dim", 256, 16, 4096)
    expected = ("a non-empty list of field paths (names joined by '.', e.g. payload.text) "
                "or one comma-separated string")
    try:
        paths = parse_field_paths(r.string_list("event_text_fields", DEFAULT_TEXT_FIELDS, expected))
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
    kinds = r.string_list("recency_kinds", ("event",), expected)
    if any(k not in KINDS for k in kinds):
        r.fail("recency_kinds", expected, r.data.get("recency_kinds"))
    recall = RecallConfig(
        enabled=enabled, embedder=embedder, hash_dim=hash_dim, event_text_fields=tuple(".".join(p) for p in paths),
        default_k=default_k, candidates=candidates, rrf_k=rrf_k, keyword_weight=keyword_weight,
        vector_weight=vector_weight, min_similarity=min_similarity, recency_weight=recency_weight,
        recency_half_life_s=half_life_s, recency_kinds=tuple(dict.fromkeys(kinds)),
        head_weight=r.int("head_weight", 3, 1, 10), max_fresh=r.int("max_fresh", 500, 0, 100_000),
        indexer_batch_size=r.int("indexer_batch_size", 256, 1, 100_000),
        indexer_interval_ms=r.int("indexer_interval_ms", 500, 10, 3_600_000),
        embedder_threads=r.int("embedder_threads", 0, 0, 256), graph_boost=_graph_boost(r))
    try:
        recall.fusion_params()
    except ValueError as exc:  # the reader's bounds match FusionParams; this guards their drift
        raise ConfigError(f"{r.source}: {exc}", source=r.source, key="recall") from None
    return recall


def _graph_boost(r: SectionReader) -> GraphBoostConfig:
    b = SectionReader(r.source, f"{r.section}.graph_boost", r.raw("graph_boost", {}))
    boost = GraphBoostConfig(enabled=b.bool("enabled", False), depth=b.int("depth", 1, 1, 5),
                             score=b.number("score", 0.3, 0.0, 100.0), top=b.int("top", 5, 1, 100))
    r.nested_unknown += b.unknown()
    return boost
