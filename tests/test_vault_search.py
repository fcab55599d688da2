"""Keyword search: the database path returns what the file path returns, in the same order, for any query."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory import MemoryService

from .conftest import service_config


@pytest.fixture
def svc(dsn: str, tmp_path: Path) -> Iterator[MemoryService]:
    (tmp_path / "vault" / "knowledge").mkdir(parents=True)
    service = MemoryService.from_config(service_config(dsn, tmp_path), start_vault=False)
    service.initialize()
    yield service
    service.close()


def note(root: Path, key: str, body: str, title: str | None = None, tags: list[str] | None = None) -> None:
    path = root / "vault" / "knowledge" / f"{key}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    front = ""
    if title is not None or tags is not None:
        lines = ([f"title: {json.dumps(title)}"] if title is not None else []) + \
                ([f"tags: {json.dumps(tags)}"] if tags is not None else [])  # JSON is YAML
        front = "---\n" + "\n".join(lines) + "\n---\n"
    path.write_text(front + body, encoding="utf-8")


def both(svc: MemoryService, query: str, limit: int) -> tuple[list[str], list[str]]:
    """(keys from the database path, keys from the file path) for the same query."""
    assert not svc.vault.db_pending  # current: search asks the database
    db = [n.key for n in svc.search_knowledge(query, limit)]
    svc.vault.db_pending = True  # behind: search reads the files
    try:
        files = [n.key for n in svc.search_knowledge(query, limit)]
    finally:
        svc.vault.db_pending = False
    return db, files


def test_the_best_matches_win_even_when_they_sort_last(svc: MemoryService, tmp_path: Path) -> None:
    for i in range(30):  # > limit * 5 weak matches that sort first
        note(tmp_path, f"facts/aaa-{i:02d}", f"one mention of espresso in note {i}\n")
    note(tmp_path, "facts/zzz-best", "espresso espresso espresso\n", title="Espresso, espresso")
    note(tmp_path, "facts/zzz-second", "espresso espresso\n", tags=["espresso"])
    assert svc.vault_sync().database_ok
    db, files = both(svc, "espresso", 2)
    assert db == files == ["facts/zzz-best", "facts/zzz-second"]
    assert [n.key for n in svc.search_knowledge("ESPRESSO", 2)] == ["facts/zzz-best", "facts/zzz-second"]


def test_unicode_case_and_like_wildcards(svc: MemoryService, tmp_path: Path) -> None:
    for i in range(12):  # would fill a LIMIT before the real matches, and match unescaped wildcards
        note(tmp_path, f"aa/filler-{i:02d}", "axb 50 percent x!y cafe strasse οδοσ\n")
    note(tmp_path, "zz/cafe-upper", "Menu: CAFÉ CRÈME\n")
    note(tmp_path, "zz/sharp-s", "Die Straße ist lang\n")
    note(tmp_path, "zz/capital-sharp-s", "STRAẞE in capitals\n")
    note(tmp_path, "zz/greek", "ΟΔΟΣ ΟΔΟΣ and Σίσυφος\n")
    note(tmp_path, "zz/cjk", "美式咖啡 and 拿铁\n")
    note(tmp_path, "zz/dotted", "İstanbul and the \u212aelvin scale\n")
    note(tmp_path, "zz/wild", "a_b costs 50% at x!y, path c:\\tmp\\n\n", tags=['quote"tag', "back\\slash", "Éclair"])
    assert svc.vault_sync().database_ok
    expected = {
        "café": ["zz/cafe-upper"],
        "CRÈME": ["zz/cafe-upper"],
        "cafe": ["zz/cafe-upper"] + [f"aa/filler-{i:02d}" for i in range(4)],  # its title is its file name
        "straße": ["zz/capital-sharp-s", "zz/sharp-s"],
        "strasse": [f"aa/filler-{i:02d}" for i in range(5)],
        "οδος": ["zz/greek"],  # Python lowers a final Σ to ς
        "σίσυφος": ["zz/greek"],
        "咖啡": ["zz/cjk"],
        "i̇stanbul": ["zz/dotted"],
        "İSTANBUL": ["zz/dotted"],
        "kelvin": ["zz/dotted"],
        "50%": ["zz/wild"],
        "a_b": ["zz/wild"],
        "x!y": [f"aa/filler-{i:02d}" for i in range(5)],
        "c:\\tmp\\n": ["zz/wild"],
        'quote"tag': ["zz/wild"],
        "back\\slash": ["zz/wild"],
        "éclair": ["zz/wild"],
        "%": ["zz/wild"],
        "_": ["zz/wild"],
        "!": [f"aa/filler-{i:02d}" for i in range(5)],
    }
    for query, keys in expected.items():
        db, files = both(svc, query, 5)
        assert files == keys, query
        assert db == files, query


def test_pattern_rules_rest_on_facts_about_lower() -> None:
    """The pre-filter may only drop notes that cannot match; these are the facts it relies on."""
    from memory.vault._search import like_patterns, tags_pattern, text_pattern

    multi, to_ascii, caseless_targets = [], [], set()
    for cp in range(0x110000):
        c = chr(cp)
        low = c.lower()
        if len(low) != 1:
            multi.append(c)
        if cp >= 128 and any(ord(x) < 128 for x in low):
            to_ascii.append(c)
        if low != c:
            caseless_targets.update(x for x in low if x.upper() == x and x != c)
    assert multi == ["\u0130"]  # only İ lowers to two characters (i + U+0307)
    assert to_ascii == ["\u0130", "\u212a"]  # only İ and the Kelvin sign lower to ASCII (i, k)
    assert caseless_targets == {"\u0307"}  # the only caseless character another one lowers to
    assert text_pattern("kiß") == "%___%" and text_pattern("a%b_c!") == "%a!%b!_c!!%"
    assert text_pattern("咖啡") == "%咖啡%" and text_pattern("i\u0307x") == "%_%x%"
    assert tags_pattern('é"x') == "%x%" and tags_pattern("wiki") == "%w%"
    assert like_patterns(["a" * 501, "b"]) == [("%b%", "%b%")]


ALPHABET = ["a", "A", "e", "é", "É", "i", "İ", "k", "\u212a", "s", "ß", "ẞ", "σ", "Σ", "ς", "咖", "啡",
            "%", "_", "!", "\\", '"', "0", "x", "-"]


def random_word(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 3)))


def test_random_vaults_and_queries_agree(svc: MemoryService, tmp_path: Path) -> None:
    rng = random.Random(8)
    for i in range(60):
        body = " ".join(random_word(rng) for _ in range(rng.randint(1, 12)))
        tags = [random_word(rng) for _ in range(rng.randint(0, 2))] if rng.random() < 0.5 else None
        title = " ".join(random_word(rng) for _ in range(2)) if rng.random() < 0.5 else None
        note(tmp_path, f"c{rng.randint(0, 3)}/n{i:03d}", f"{body}\n", title=title, tags=tags)
    report = svc.vault_sync()
    assert report.database_ok and report.new == 60
    hits = 0
    for _ in range(300):
        query = " ".join(random_word(rng) for _ in range(rng.randint(1, 2)))
        limit = rng.choice([1, 3, 10, 100])
        db, files = both(svc, query, limit)
        assert db == files, (query, limit)
        hits += bool(files)
    assert hits > 100  # the queries exercised real matches, not only empty results
