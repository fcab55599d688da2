"""The terms work on the real backends: SQLite FTS5 and MariaDB InnoDB FULLTEXT with its defaults.

These tests exist because the backends drop things silently: InnoDB ignores tokens shorter than
``innodb_ft_min_token_size`` (3) and its stopwords, and both split CJK text only at spaces. With
plain normalized words in the indexed column instead of terms, ``咖啡``, ``커피`` and ``喝`` find nothing
on either backend, and ``ai``, ``go``, ``the``, ``will`` find nothing on MariaDB (checked by hand on
this server with a utf8mb4 column).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memory.index._text import index_terms, keyword_query, segments

from .index_backends import Fts5Table, KeywordTable, MariaTable

DOCS = {
    "zh": "我每天早上喝咖啡",
    "ko": "나는 매일 아침 커피를 마신다",
    "ja": "毎朝コーヒーを飲みます",
    "short": "AI and C and R and Go in 7 days",
    "stop": "the will of the com und www",
    "accents": "Crème brûlée at the CAFÉ in Zürich",
    "cyrillic": "Привет мир, йогурт",
    "long": "antidisestablishmentarianism" * 4 + " supercalifragilistic",
    "mixed": "iPhone手机和MacBook电脑 emoji😀inside",
    "thai": "สวัสดีครับ ผมชอบกาแฟ",
}


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.integration)])
def table(request: pytest.FixtureRequest) -> Iterator[KeywordTable]:
    if request.param == "sqlite":
        yield Fts5Table()
        return
    t = MariaTable(request.getfixturevalue("mysql_dsn"))
    try:
        yield t
    finally:
        t.dispose()


def fill(table: KeywordTable) -> None:
    for name, body in DOCS.items():
        table.add("knowledge", name, "", body)


def ids(rows: list[tuple[str, str]]) -> set[str]:
    return {r[1] for r in rows}


def test_issue_examples(table: KeywordTable) -> None:
    fill(table)
    assert ids(table.search("咖啡", 5)) == {"zh"}
    assert ids(table.search("커피", 5)) == {"ko"}
    assert ids(table.search("커피를", 5)) == {"ko"}
    assert ids(table.search("コーヒー", 5)) == {"ja"}
    assert "zh" in ids(table.search("喝", 5))              # one character: a prefix search
    assert ids(table.search("乌龙茶", 5)) == set()


def test_every_word_and_run_of_every_document_finds_it(table: KeywordTable) -> None:
    """Self-retrieval: no term is lost to token size limits, stopwords or collation."""
    fill(table)
    for name, body in DOCS.items():
        for seg in segments(body):
            pieces = [seg.surface] if not seg.is_run else [seg.surface, seg.surface[:2], seg.surface[-1]]
            for piece in pieces:
                assert name in ids(table.search(piece, 20)), (name, piece)


def test_short_words_stopwords_and_accents(table: KeywordTable) -> None:
    fill(table)
    for q in ("ai", "c", "r", "go", "7", "the", "will", "com", "und", "www"):
        assert ids(table.search(q, 5)) >= {"short"} or ids(table.search(q, 5)) >= {"stop"}, q
    assert ids(table.search("creme brulee", 5)) == {"accents"}
    assert ids(table.search("ZURICH", 5)) == {"accents"}
    assert ids(table.search("ЙОГУРТ", 5)) == {"cyrillic"}
    assert ids(table.search("c", 5)) == {"short"}           # not every word containing a c


@pytest.mark.parametrize("hostile", [
    '"', '""', "*", "-", "+", "@", "(", ")", "NEAR", "NEAR(a b)", "a OR b", 'coffee" OR 1=1 --', "col:coffee",
    "^x", "~x", "<x", ">x", "'x'", "\\", "\x00coffee\x00", "-咖啡", "+커피*", "AND", "NOT", "%", "_", ";DROP TABLE x",
])
def test_hostile_queries_run_on_the_backend(table: KeywordTable, hostile: str) -> None:
    fill(table)
    rows = table.search(hostile, 5)        # must not raise a syntax error on either backend
    assert isinstance(rows, list)
    if "咖啡" in hostile:
        assert ids(rows) == {"zh"}
    if "커피" in hostile:
        assert ids(rows) == {"ko"}


def test_huge_and_empty_queries(table: KeywordTable) -> None:
    fill(table)
    assert table.search("", 5) == [] and table.search("!!!", 5) == []
    assert "zh" in ids(table.search("咖啡 " * 2_000_000, 5))


def test_require_all_terms_on_both_backends(table: KeywordTable) -> None:
    table.add("event", "both", "", "black coffee every morning")
    table.add("event", "one", "", "black tea")
    table.add("event", "cjk", "", "我每天早上喝咖啡")
    assert ids(table.search("black coffee", 5, require_all=True)) == {"both"}
    assert ids(table.search("black coffee", 5)) == {"both", "one"}
    assert ids(table.search("早上 咖啡", 5, require_all=True)) == {"cjk"}
    assert ids(table.search("咖啡 coffee", 5, require_all=True)) == set()
    assert ids(table.search("喝 咖啡", 5, require_all=True)) == {"cjk"}       # with a prefix term


def test_title_weighs_more_than_body(table: KeywordTable) -> None:
    table.add("knowledge", "body-mention", "Gardening", "We talked about coffee once, among other things.")
    table.add("knowledge", "title-mention", "Coffee", "Notes on brewing.")
    assert table.search("coffee", 5)[0] == ("knowledge", "title-mention")


def test_more_matching_terms_rank_higher(table: KeywordTable) -> None:
    table.add("event", "one", "", "black tea in the afternoon")
    table.add("event", "two", "", "black coffee every morning")
    table.add("event", "three", "", "nothing relevant here at all")
    rows = table.search("black coffee morning", 5)
    assert rows[0] == ("event", "two") and ("event", "three") not in rows


def test_filters(table: KeywordTable) -> None:
    table.add("knowledge", "note", "Umbrella", "Keep a spare umbrella at the office")
    table.add("event", "e-old", "", "left my umbrella on the bus", "chat:a", 1_000.0)
    table.add("event", "e-new", "", "bought a new umbrella", "chat:b", 5_000.0)
    assert ids(table.search("umbrella", 5)) == {"note", "e-old", "e-new"}
    assert ids(table.search("umbrella", 5, session_key="chat:a")) == {"note", "e-old"}
    assert ids(table.search("umbrella", 5, kinds=["event"], since=2_000.0)) == {"e-new"}
    assert ids(table.search("umbrella", 5, kinds=["event"], until=2_000.0)) == {"e-old"}
    assert ids(table.search("umbrella", 5, kinds=["knowledge"])) == {"note"}


def test_query_and_index_agree_on_terms() -> None:
    """The backends only ever see terms; the same text gives the same terms on both sides."""
    for body in DOCS.values():
        kq = keyword_query(body)
        assert kq is not None
        assert set(kq.exact) <= set(index_terms(body).split())
