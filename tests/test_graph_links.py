"""Notes' links become ``links_to`` edges and follow edits, moves and deletes (SQLite and MariaDB);
the link resolver itself (a pure function)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from memory import MemoryService
from memory.vault._links import link_targets
from memory.vault._parse import parse

Make = Callable[..., MemoryService]


def links_of(svc: MemoryService, key: str) -> list[str]:
    return sorted(e.dst for e in svc.graph.edges(key, types=["links_to"]))


def test_links_follow_edits_moves_and_deletes(make_service: Make, dsn: str, tmp_path: Path) -> None:
    svc = make_service(dsn)
    svc.initialize()
    svc.upsert_knowledge("facts/coffee", "# Coffee\nBitter.")
    svc.upsert_knowledge("people/bob", "# Bob\nLikes [[facts/coffee|the black stuff]].")
    svc.upsert_knowledge("facts/tea", "# Tea\nUnlike [[Coffee]], see [Bob](../people/bob.md), [[milk#fat]], "
                         "[web](https://example.com/x.md), [[pic.png]], [out](../../../etc/x.md), [[Tea]].")
    assert links_of(svc, "facts/tea") == ["facts/coffee", "facts/milk", "people/bob"]
    assert sorted(e.src for e in svc.graph.edges("facts/coffee", "in")) == ["facts/tea", "people/bob"]
    # An edit that drops a link drops its edge; the others stay as they were.
    before = {e.dst: e.created_at for e in svc.graph.edges("facts/tea")}
    svc.upsert_knowledge("facts/tea", "# Tea\nSee [Bob](../people/bob.md) and [[milk]].")
    after = svc.graph.edges("facts/tea")
    assert sorted(e.dst for e in after) == ["facts/milk", "people/bob"]
    assert all(e.created_at == before[e.dst] for e in after)
    # A user edge to the note survives a move too.
    svc.graph.add_edge("some-event", "facts/coffee", "mentions")
    assert svc.flush(10)
    root = tmp_path / "vault" / "knowledge"
    (root / "drinks").mkdir()
    os.rename(root / "facts" / "coffee.md", root / "drinks" / "coffee.md")
    report = svc.vault_sync()
    assert report.moved == 1
    assert svc.graph.edges("facts/coffee", "both") == []
    assert sorted((e.src, e.type) for e in svc.graph.edges("drinks/coffee", "in")) == [
        ("people/bob", "links_to"), ("some-event", "mentions")]
    # A deleted note loses every edge, both ways.
    assert svc.delete_knowledge("people/bob")
    assert svc.graph.edges("people/bob", "both") == [] and links_of(svc, "facts/tea") == ["facts/milk"]
    (root / "drinks" / "coffee.md").unlink()
    svc.vault_sync()
    assert svc.graph.edges("drinks/coffee", "both") == []


def test_a_human_edit_is_picked_up_by_the_sync(make_service: Make, dsn: str, tmp_path: Path) -> None:
    svc = make_service(dsn)
    svc.initialize()
    svc.upsert_knowledge("facts/a", "plain")
    path = tmp_path / "vault" / "knowledge" / "facts" / "a.md"
    path.write_text("now links [[b]] and [[c]]\n")
    svc.vault_sync()
    assert links_of(svc, "facts/a") == ["facts/b", "facts/c"]
    path.write_text("only [[c]]\n")
    svc.vault_sync()
    assert links_of(svc, "facts/a") == ["facts/c"]


KEYS = {"facts/coffee", "facts/Tea", "people/bob", "misc/Unique Name", "a/dup", "b/dup"}


@pytest.mark.parametrize("text,expected", [
    ("[[Coffee]]", ["facts/coffee"]),  # a bare name: same folder, case ignored
    ("[[tea]]", ["facts/Tea"]),
    ("[[facts/coffee|alias]] [[facts/coffee#h]]", ["facts/coffee"]),
    ("[[knowledge/people/bob.md]]", ["people/bob"]),
    ("[[Unique Name]]", ["misc/Unique Name"]),  # the one note of that name anywhere
    ("[[dup]]", ["facts/dup"]),  # ambiguous elsewhere: the same folder (a note not written yet)
    ("[[./sub/x]] [[../people/bob]]", ["facts/sub/x", "people/bob"]),
    ("[b](../people/bob.md#top) [c](coffee.md?x=1) [s](my%20note.md)", ["people/bob", "facts/coffee", "facts/my note"]),
    ("[u](https://x.org/a.md) [m](mailto:a@b.md) [abs](/etc/a.md) [img](pic.png) ![[pic.png]] [[file.pdf]]", []),
    ("[[../../../etc/passwd]] [o](../../md/system.md) [[md/system]] [[self]]", []),
])
def test_link_targets(text: str, expected: list[str]) -> None:
    rel = "knowledge/facts/self.md"
    assert list(link_targets(rel, parse(text + "\n", rel).refs, KEYS)) == expected
