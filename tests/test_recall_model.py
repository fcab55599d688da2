"""With the ``embeddings`` extra: through the whole service, the real model finds paraphrases
(queries sharing no word with their target) that keyword search cannot. Without the extra these
tests skip, saying so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService
from memory.index._embed import MiniLMEmbedder
from memory.index._indexer import IndexSettings, Reindexer

from .conftest import service_config, wait_for

DATA = Path(__file__).parent / "data"
CORPUS: dict[str, Any] = json.loads((DATA / "recall_corpus.json").read_text(encoding="utf-8"))
PARAPHRASES = [q for q in json.loads((DATA / "recall_queries.json").read_text(encoding="utf-8"))["queries"]
               if q["type"] == "paraphrase"]
MODEL_MISSING = MiniLMEmbedder.unavailable_reason()
needs_model = pytest.mark.skipif(MODEL_MISSING is not None, reason=f"embeddings extra not installed: {MODEL_MISSING}")


def write_vault(root: Path) -> None:
    for n in CORPUS["notes"]:
        path = root / "vault" / "knowledge" / f"{n['key']}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        front = json.dumps({"title": n["title"], "tags": n["tags"]}, ensure_ascii=False)
        path.write_text(f"---\n{front}\n---\n{n['body']}\n", encoding="utf-8")


def hit_rate(svc: MemoryService, k: int = 5) -> float:
    found = 0
    for q in PARAPHRASES:
        got = {f"{h.kind}:{h.id}" for h in svc.recall(q["query"], k, session_key=q.get("session_key"))}
        found += bool(got & set(q["expected"]))
    return found / len(PARAPHRASES)


def loaded(dsn: str, root: Path, embedder: str) -> MemoryService:
    cfg = service_config(dsn, root)
    cfg["recall"] = {"embedder": embedder, "indexer_interval_ms": 20}
    svc = MemoryService.from_config(cfg)
    for e in CORPUS["events"]:
        svc.append_event(e["obs"], e["session_key"])
    assert svc.flush(30)
    assert wait_for(lambda: svc.health()["index"]["lag_records"] == 0 and
                    (svc.health()["index"]["items"] or 0) >= len(CORPUS["notes"]), 120), svc.health()["index"]
    return svc


@needs_model
def test_the_model_beats_keywords_on_paraphrases(dsn: str, tmp_path: Path) -> None:
    write_vault(tmp_path)
    with loaded(dsn, tmp_path, "none") as keyword_only:
        keyword = hit_rate(keyword_only)
    # The same database, now with the model: the rows made without vectors are re-embedded by a
    # reindex (what `memory reindex` runs), and health stops reporting another embedder.
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"embedder": "minilm", "indexer_interval_ms": 20}
    with MemoryService.from_config(cfg) as svc:
        module = svc.recall_index
        assert module.embedder is not None and module.mirror is not None
        assert wait_for(lambda: (svc.health()["index"]["other_embedder"] or 0) >= len(CORPUS["notes"]), 60), \
            svc.health()["index"]
        rx = Reindexer(svc.store, module.embedder, IndexSettings(paths=svc.config.recall.event_field_paths()))
        while not rx.step().finished:
            pass
        module.mirror.refresh()
        assert svc.health()["index"]["other_embedder"] == 0
        model = hit_rate(svc)
        assert keyword <= 0.2 and model >= 0.8, (keyword, model)
        hit = svc.recall(PARAPHRASES[0]["query"], 3)[0]
        assert hit.why.vector_rank == 1 and hit.why.similarity is not None and hit.why.similarity > 0.3
