"""Keyword terms, query sanitization, event text and snippets: the pure text layer of recall."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.index._extract import DEFAULT_FIELD_PATHS, event_text, parse_field_paths, snippet
from memory.index._text import (MAX_QUERY_TERMS, document_terms, index_terms, is_run, is_valid_term, keyword_query, local_score,
                                normalize, segments)

INNODB_STOPWORDS = set("a about an are as at be by com de en for from how i in is it la of on or that the this to was "
                       "what when where who will with und www".split())


def matches(query: str, doc: str) -> bool:
    """Would ``query`` find ``doc`` in a term index (any exact term, or any prefix term)?"""
    kq = keyword_query(query)
    assert kq is not None
    terms = index_terms(doc).split()
    return bool(set(kq.exact) & set(terms)) or any(t.startswith(p) for p in kq.prefix for t in terms)


# -- normalization and segmentation --------------------------------------------------------

def test_normalize_folds_width_case_and_accents_but_keeps_hangul_and_kana() -> None:
    assert normalize("ＡＢＣ Straße CAFÉ naïve") == "abc strasse cafe naive"
    assert normalize("나는 커피를") == "나는 커피를"           # NFKD would split syllables into jamo
    assert normalize("ｶﾞｷﾞ") == "ガギ"                        # half-width kana → full width, voicing kept
    assert normalize("ㅋ") == "ᄏ"                              # compatibility jamo → conjoining jamo
    for s in ("Ǆemal Ñandú", "Ωμέγα", "Йогурт", "ﬁne"):
        assert normalize(normalize(s)) == normalize(s)


def test_segments_split_scripts_and_runs() -> None:
    segs = [(s.surface, s.is_run) for s in segments("iPhone手机 3.14 snake_case 나는 커피를, コーヒー・テスト")]
    assert segs == [("iphone", False), ("手机", True), ("3", False), ("14", False), ("snake", False), ("case", False),
                    ("나는", True), ("커피를", True), ("コーヒー", True), ("テスト", True)]
    # Devanagari vowel signs are combining marks: the word stays whole.
    assert [s.surface for s in segments("हिन्दी भाषा")] == ["हिन्दी", "भाषा"]
    assert is_run("咖啡") and is_run("커피") and not is_run("coffee") and not is_run("咖啡x")


def test_cjk_and_korean_queries_match_inside_runs() -> None:
    assert matches("咖啡", "我每天早上喝咖啡")
    assert matches("커피", "나는 매일 아침 커피를 마신다")
    assert matches("커피를", "커피 한 잔")                      # the particle costs one bigram, not the match
    assert matches("茶", "我喝茶了")                             # one character: prefix of its bigram
    assert matches("了", "我喝茶了")                             # one character at the run's end: the unigram
    assert matches("コーヒー", "毎朝コーヒーを飲む")
    assert not matches("咖啡", "我每天早上喝茶")
    assert not matches("커피", "나는 차를 마신다")


def test_short_words_and_stopwords_survive_as_terms() -> None:
    for word in ("ai", "c", "r", "go", "the", "will", "com", "und", "7"):
        assert matches(word, f"notes about {word} here"), word
    assert not matches("c", "cx programming")                    # "c" and "cx" can never collide
    assert not matches("cx", "c programming")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_every_term_is_short_ascii_and_never_an_innodb_stopword(text: str) -> None:
    for term in index_terms(text).split():
        assert is_valid_term(term), term
        assert 3 <= len(term) <= 64 and term.isascii() and term.isalnum()
        assert term not in INNODB_STOPWORDS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("我你他喝茶咖啡早上每天커피를마신다나는매일아침の猫がコーヒー"), min_size=1, max_size=30),
       st.data())
def test_any_substring_of_a_run_finds_it(chars: list[str], data: st.DataObject) -> None:
    doc = "".join(chars)
    start = data.draw(st.integers(0, len(doc) - 1))
    end = data.draw(st.integers(start + 1, len(doc)))
    assert matches(doc[start:end], f"前文 {doc} 後文")


def test_long_words_are_hashed_consistently() -> None:
    word = "x" * 500
    terms = index_terms(f"start {word} end").split()
    assert len(terms) == 3 and terms[1].startswith("g") and len(terms[1]) == 21
    assert matches(word, f"another {word}")
    assert not matches(word, "x" * 499)


def test_document_terms_repeat_the_head() -> None:
    assert document_terms("Coffee", "black").split() == ["xcoffee", "xcoffee", "xcoffee", "xblack"]
    assert document_terms("咖啡", None, head_weight=1).split() == index_terms("咖啡").split()
    assert document_terms(None, "x y") == "jxj jyj" and document_terms("", "") == ""
    with pytest.raises(ValueError):
        document_terms("a", "b", head_weight=0)


def test_index_terms_keep_frequency_and_cap_length() -> None:
    assert index_terms("tea tea tea").split() == ["xtea"] * 3
    assert index_terms("") == "" and index_terms(None) == ""
    assert index_terms("a " * 1000, max_chars=10).split() == ["jaj"] * 5


# -- queries -------------------------------------------------------------------------------

@pytest.mark.parametrize("hostile", [
    "", "   ", "!!!???...", "\x00\x00\x00", '"', '""', "*", "-", "+", "@", "()", "NEAR", "NEAR(a b)", "a OR b",
    'coffee" OR 1=1 --', "col:coffee", "^start", "~tilde", "<>", "'single'", "\\", "\ud800\udfff lone", "😀😀",
])
def test_hostile_queries_never_raise_and_carry_only_terms(hostile: str) -> None:
    kq = keyword_query(hostile)
    if kq is None:
        return
    for t in kq.terms:
        assert is_valid_term(t)
    assert kq.fts5().replace('"', " ").replace("*", " ").replace(" OR ", " ").split() == list(kq.terms)
    assert kq.boolean().replace("*", "").split() == list(kq.terms)


def test_punctuation_only_and_empty_queries_are_none() -> None:
    for q in ("", "  ", "!!! ??? ...", "\x00", "《》、。", "😀"):
        assert keyword_query(q) is None


def test_ten_megabyte_query_is_cut_not_refused() -> None:
    big = ("coffee tea 咖啡 커피 " * 700_000)[:10_000_000]
    kq = keyword_query(big)
    assert kq is not None and len(kq.terms) <= MAX_QUERY_TERMS
    assert set(kq.exact) >= {"xcoffee", "xtea"}
    assert keyword_query("a" * 10_000_000) is not None          # one giant word: hashed, still a term
    assert keyword_query("\x00" * 10_000_000) is None


def test_query_terms_are_capped_and_deduplicated() -> None:
    kq = keyword_query(" ".join(f"word{i}" for i in range(100)) + " word0")
    assert kq is not None and len(kq.terms) == MAX_QUERY_TERMS and len(set(kq.terms)) == MAX_QUERY_TERMS
    assert kq.exact[0] == "xword0"


def test_stopwords_drop_only_when_other_terms_remain() -> None:
    kq = keyword_query("the coffee of the day")
    assert kq is not None and kq.exact == ("xcoffee", "xday")
    only = keyword_query("the of")
    assert only is not None and only.exact == ("xthe", "xof")


def test_non_string_queries() -> None:
    assert keyword_query(12345) is not None

    class Evil:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert keyword_query(Evil()) is None


def test_boolean_require_all_and_fts5_prefix_syntax() -> None:
    kq = keyword_query("茶 coffee")
    assert kq is not None
    assert kq.fts5() == '"xcoffee" OR "k0px2"*'
    assert kq.boolean() == "xcoffee k0px2*"
    assert kq.boolean(require_all=True) == "+xcoffee +k0px2*"
    assert kq.fts5(require_all=True) == '"xcoffee" AND "k0px2"*'


def test_local_score_ranks_more_matching_terms_higher() -> None:
    kq = keyword_query("black coffee morning")
    assert kq is not None
    one = local_score(kq, index_terms("coffee is nice"))
    two = local_score(kq, index_terms("coffee every morning"))
    assert two > one > 0.0
    assert local_score(kq, index_terms("tea only")) == 0.0 and local_score(kq, "") == 0.0
    single = keyword_query("茶")
    assert single is not None and local_score(single, index_terms("我喝茶")) > 0.0


# -- event text ----------------------------------------------------------------------------

def test_event_text_default_fields_in_order() -> None:
    assert event_text(json.dumps({"text": "a", "content": "b"})) == "a"
    assert event_text(json.dumps({"content": "b", "message": "c"})) == "b"
    assert event_text(json.dumps({"message": "c"})) == "c"
    assert event_text(json.dumps({"body": "d"})) == "d"
    assert event_text(json.dumps({"text": "   ", "body": "d"})) == "d"     # blank is no text
    assert event_text(json.dumps({"text": 5, "message": True})) is None
    assert event_text(json.dumps({"type": "sticker"})) is None


def test_event_text_dotted_paths_lists_and_nested_objects() -> None:
    paths = parse_field_paths(["payload.text", "parts.1.text", "text"])
    assert event_text(json.dumps({"payload": {"text": "deep"}}), paths) == "deep"
    assert event_text(json.dumps({"parts": [{"text": "zero"}, {"text": "one"}]}), paths) == "one"
    assert event_text(json.dumps({"payload": {"text": None}, "text": "top"}), paths) == "top"
    # chat "content parts": strings and the text of objects, joined
    assert event_text(json.dumps({"content": [{"type": "text", "text": "hi"}, "there", {"type": "image"}]})) == "hi\nthere"
    assert event_text(json.dumps({"message": {"text": "inner"}})) == "inner"
    assert event_text(json.dumps("a bare string observation")) == "a bare string observation"


@pytest.mark.parametrize("raw", [None, "", "not json", "{", "[1, 2]", "42", "null", b"\xff\xfe", "[" * 100_000])
def test_event_text_never_raises(raw: str | bytes | None) -> None:
    assert event_text(raw) is None


def test_field_path_validation() -> None:
    assert parse_field_paths("text, payload.text") == (("text",), ("payload", "text"))
    assert DEFAULT_FIELD_PATHS == (("text",), ("content",), ("message",), ("body",))
    for bad in ([], [""], ["a..b"], [".a"], ["a b"], [None]):
        with pytest.raises(ValueError):
            parse_field_paths(bad)  # type: ignore[arg-type]


# -- snippets ------------------------------------------------------------------------------

def test_snippet_centres_on_the_densest_match_and_stays_within_300() -> None:
    text = "Intro sentence. " * 40 + "I drink black COFFEE every morning before tea. " + "Filler words. " * 40
    s = snippet(text, "coffee tea")
    assert len(s) <= 300 and "COFFEE every morning before tea" in s
    assert s.startswith("…") and s.endswith("…")


def test_snippet_cjk_korean_and_fallbacks() -> None:
    long_zh = "今天天气很好。" * 60 + "我每天早上喝咖啡。" + "明天也会很好。" * 60
    s = snippet(long_zh, "咖啡")
    assert "咖啡" in s and len(s) <= 300
    assert "커피를" in snippet("가" * 400 + " 나는 매일 아침 커피를 마신다 " + "나" * 400, "커피를 좋아해")
    assert snippet("short text", "absent") == "short text"
    assert snippet("", "x") == "" and snippet(None, "x") == ""
    assert len(snippet("word " * 10_000, None)) <= 300
    assert snippet("a\n\n  b\tc", None) == "a b c"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000), st.text(max_size=50), st.integers(10, 400))
def test_snippet_never_raises_and_respects_width(text: str, query: str, width: int) -> None:
    assert len(snippet(text, query, width)) <= width


def test_pair_queries_need_three_terms_and_pair_every_two() -> None:
    from memory.index._text import keyword_query

    two = keyword_query("apple banana")
    assert two is not None and two.fts5_pairs() is None and two.boolean_pairs() is None
    three = keyword_query("apple banana cherry")
    assert three is not None
    a, b, c = three.terms
    assert three.fts5_pairs() == f'("{a}" AND "{b}") OR ("{a}" AND "{c}") OR ("{b}" AND "{c}")'
    assert three.boolean_pairs() == f"(+{a} +{b}) (+{a} +{c}) (+{b} +{c})"
    many = keyword_query(" ".join(f"word{i}x" for i in range(20)))
    assert many is not None and many.fts5_pairs().count(" OR ") == 8 * 7 // 2 - 1  # type: ignore[union-attr]
