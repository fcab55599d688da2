"""The ``graph:`` config section → :class:`GraphConfig` (the plug-in is ``memory._graph_module``;
the recall boost by graph neighbours is ``recall.graph_boost``, read with recall's section)."""

from __future__ import annotations

import dataclasses

from ._config_reader import SectionReader


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


def read_graph(r: SectionReader) -> GraphConfig:
    return GraphConfig(enabled=r.bool("enabled", True),
                       max_edges_per_item=r.int("max_edges_per_item", 20, 1, 100_000),
                       turn_edges=r.bool("turn_edges", True), link_edges=r.bool("link_edges", True))
