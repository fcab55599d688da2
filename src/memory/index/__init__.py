"""Recall: keyword terms for any language, embedders, the vector search structure and fusion.

Private modules, each pure or self-contained, wired into ``MemoryService`` by the recall service:

* ``_text``: normalization, CJK/Hangul bigram segmentation, ASCII index terms valid on SQLite FTS5
  and MySQL/MariaDB FULLTEXT with default settings, and sanitized keyword queries;
* ``_extract``: the text of an event (configurable field paths) and hit snippets;
* ``_embed``: the embedder contract, the built-in ``hash`` embedder and the optional model;
* ``_vectors``: exact cosine search with filters applied before ranking;
* ``_fusion``: reciprocal-rank fusion with recency and salience, ``Hit``, argument parsing;
* ``_config``: the ``recall:`` config section (``RecallConfig``, ``GraphBoostConfig``).
"""

# Only the pure shapes here: the config loader imports ``memory.index._config`` (the ``recall:``
# section) and must not pull the service side (``_module`` imports the config) in with it.
from ._fusion import Hit, Why

__all__ = ["Hit", "Why"]
