"""The recall benchmark's corpus and queries (``bench_recall``): seeded, deterministic.

* :func:`make_corpus`: notes and events in English, Chinese and Korean built from the templates
  and slot words of ``recall_vocab`` (50 % / 25 % / 25 %);
* :func:`vocabulary`: those slot words without any word of the labelled queries of ``tests/data``,
  so each labelled query keeps exactly its labelled answers among the distractors;
* :func:`known_item_queries`: a name and one or two facts of one item's sentence; a query that
  more than ``K`` items contain entirely is marked ambiguous (not counted in the hit rate);
* :func:`labelled`: the labelled set itself; :func:`write_vault`: notes as vault files.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recall_vocab import LANG_DATA, WHAT, WHO  # data only, in its own module

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
K = 10
LANGS = ("en", "zh", "ko")


@dataclasses.dataclass(frozen=True)
class Item:
    kind: str  # "knowledge" or "event"
    ref: str  # note key, or the event's position until it has an id
    lang: str
    title: str
    tags: tuple[str, ...]
    body: str
    session_key: str | None
    facets: tuple[tuple[str, str], ...]  # (slot, value) of one sentence: known-item queries use them


@dataclasses.dataclass(frozen=True)
class Query:
    lang: str
    text: str
    expected: tuple[str, ...]  # "kind:ref" items that must be in the top 10
    ambiguous: bool  # more than K items contain every query word: not counted in the hit rate
    source: str  # "known-item" or "labelled"


Vocab = dict[str, dict[str, list[str]]]


def vocabulary(banned: set[str]) -> Vocab:
    """Slot words without any labelled query word (English: whole words; Chinese and Korean: a
    substring either way), so each labelled query keeps exactly its answers among the distractors."""
    def clash(lang: str, w: str) -> bool:
        if lang == "en":
            return bool(set(w.lower().split()) & {b.lower() for b in banned})
        return any(b in w or w in b for b in banned)

    return {lang: {slot: [w for w in words if not clash(lang, w)] or list(words) for slot, words in slots.items()}
            for lang, (slots, _, _) in LANG_DATA.items()}


def _fill(vocab: Vocab, lang: str, template: str, rng: random.Random) -> tuple[str, tuple[tuple[str, str], ...]]:
    slots: dict[str, Any] = {k: rng.choice(words) for k, words in vocab[lang].items()}
    slots.update(code=f"{rng.choice('ACDJKLMNQSTUZ')}{rng.choice('ABFHKLUXZ')}{rng.randint(100, 9999)}",
                 hour=rng.randint(6, 22), minute=f"{rng.randint(0, 59):02d}")
    facets = tuple((f, slots[f]) for f in (*WHO[lang], *WHAT) if "{" + f + "}" in template)
    return template.format(**slots), facets


def make_corpus(vocab: Vocab, notes: int, events: int, seed: int, prefix: str = "n") -> list[Item]:
    """``notes`` notes then ``events`` events, languages 50 % en / 25 % zh / 25 % ko."""
    rng = random.Random(seed)
    out: list[Item] = []
    folders = ("people", "trips", "projects", "home", "health", "work", "money", "food")
    for i in range(notes + events):
        lang = LANGS[(0, 0, 1, 2)[i % 4]]
        v, (_, ev_templates, note_templates) = vocab[lang], LANG_DATA[lang]
        if i < notes:
            parts = [_fill(vocab, lang, rng.choice(note_templates), rng) for _ in range(rng.randint(3, 7))]
            title_src, facets = parts[0]
            title = title_src.split("，")[0].split(",")[0].split(" 씨는")[0][:40].rstrip("。.")
            body = "\n\n".join(p for p, _ in parts[1:])
            tags = (rng.choice(v["city"]), rng.choice(folders))
            out.append(Item("knowledge", f"{rng.choice(folders)}/{prefix}{lang}-{i:06d}", lang, title, tags,
                            f"{parts[0][0]}\n\n{body}", None, facets))
        else:
            text, facets = _fill(vocab, lang, rng.choice(ev_templates), rng)
            out.append(Item("event", str(i), lang, "", (), text, f"chat:user-{rng.randrange(200):03d}", facets))
    return out


def write_vault(root: Path, notes: Sequence[Item], headings: dict[str, Sequence[str]] | None = None) -> None:
    for n in notes:
        p = root / "knowledge" / f"{n.ref}.md"
        p.parent.mkdir(parents=True, exist_ok=True)
        heads = "".join(f"## {h}\n\n" for h in (headings or {}).get(n.ref, ()))
        p.write_text(f"---\ntitle: {json.dumps(n.title, ensure_ascii=False)}\ntags: "
                     f"{json.dumps(list(n.tags), ensure_ascii=False)}\n---\n# {n.title}\n\n{heads}{n.body}\n",
                     encoding="utf-8")


def labelled() -> tuple[list[Item], dict[str, list[str]], list[dict[str, Any]], list[dict[str, Any]]]:
    corpus = json.loads((DATA / "recall_corpus.json").read_text(encoding="utf-8"))
    queries = json.loads((DATA / "recall_queries.json").read_text(encoding="utf-8"))["queries"]
    notes = [Item("knowledge", n["key"], "", n["title"], tuple(n["tags"]), n["body"], None, ())
             for n in corpus["notes"]]
    headings = {n["key"]: n["headings"] for n in corpus["notes"]}
    return notes, headings, corpus["events"], [q for q in queries if q["type"] == "keyword"]


def known_item_queries(items: Sequence[Item], per_lang: int, seed: int) -> list[Query]:
    rng = random.Random(seed)
    out: list[Query] = []
    for lang in LANGS:
        pool = []
        for it in items:
            slots = dict(it.facets)
            if it.lang == lang and all(w in slots for w in WHO[lang]) and any(w in slots for w in WHAT):
                pool.append((it, [slots[w] for w in WHO[lang]], [slots[w] for w in WHAT if w in slots]))
        texts = [" ".join((i.title, *i.tags, i.body)) for i in items if i.lang == lang]
        for it, who, what in rng.sample(pool, min(per_lang, len(pool))):
            words = who + rng.sample(what, min(len(what), 2))
            containing = sum(1 for t in texts if all(w in t for w in words))
            out.append(Query(lang, " ".join(words), (f"{it.kind}:{it.ref}",), containing > K, "known-item"))
    return out
