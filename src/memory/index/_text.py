"""Text → index terms for keyword search, identical on SQLite FTS5 and MariaDB/MySQL FULLTEXT.

Neither backend segments Chinese, Japanese or Korean: FTS5's ``unicode61`` and InnoDB's built-in
parser both cut words at spaces and punctuation only, so ``我每天早上喝咖啡`` is one "word" and a
query ``咖啡`` never matches it; MariaDB has no ngram parser at all. Segmenting is therefore done
here, in Python, and the database only indexes a column of ready-made terms.

Normalization (``normalize``): NFKC (full-width → ASCII, half-width kana → full-width, Hangul
jamo → syllables), Unicode case folding (``Straße`` → ``strasse``), and the combining accents
U+0300–U+036F are removed (``café`` → ``cafe``), as FTS5's ``remove_diacritics`` would do; Hangul
syllables and kana voicing marks are kept intact.

Segmentation: the normalized text splits into *runs* of scripts written without spaces (Han,
Hiragana, Katakana, Bopomofo, Hangul, and Thai/Lao/Khmer/Myanmar) and *words* (letters, digits
and their combining marks of every other script). A run becomes overlapping bigrams (``咖啡``,
``啡茶`` …) plus a unigram of its last character (a one-character run is just that unigram).
Korean gets no morphological analysis: the bigrams of ``커피를`` include ``커피``, so a particle
glued to a noun does not hide it, and a query ``커피를`` still matches ``커피`` by its first
bigram. A query run of two or more characters searches its bigrams; a one-character query run
searches as a prefix, which matches every bigram starting with it and the run-final unigram —
every occurrence of a character is one of those.

Encoding — the guarantee the backends need: **every term is 3 to 64 characters of ``[a-z0-9]``
and never an InnoDB stopword.** InnoDB drops tokens shorter than ``innodb_ft_min_token_size``
(3 by default: a two-character bigram would vanish), tokens longer than
``innodb_ft_max_token_size`` (84), and its default stopwords (``the``, ``will``, ``com`` …; every
one starts with a, b, c, d, e, f, h, i, l, o, t, u or w); its ``utf8mb4_unicode_ci`` collation also
equates every supplementary-plane character. ASCII terms behind a type letter that starts no
stopword sidestep all of that with the server's defaults:

* ``x`` + word, for an ASCII word of 2+ characters (``coffee`` → ``xcoffee``, ``ai`` → ``xai``);
* ``j`` + char + ``j``, for a one-character ASCII word (``c`` → ``jcj``);
* ``z`` + 4 base-36 digits per code point, for any other word (``søren`` → ``z…``, 21 chars);
* ``k`` + 4 base-36 digits per code point, for run bigrams (9 chars) and unigrams (5 chars), so
  the unigram of a character is a prefix of each bigram it starts;
* ``g`` + 20 hex digits of BLAKE2b, for a term that would be longer than 64 characters.

The type letter makes the mapping injective across kinds (``c`` and ``cx`` can never collide).
Query strings built from terms contain nothing but terms, spaces, quotes and ``*``/``OR``, so no
user input can reach either backend's query syntax.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator

#: Source characters indexed per document; a longer note is indexed by its first part.
MAX_INDEX_CHARS = 200_000
#: Characters of a query considered (a 10 MB query costs no more than a paragraph).
MAX_QUERY_CHARS = 2_000
#: Distinct terms a query searches for (first ones win: they are what the user typed first).
MAX_QUERY_TERMS = 32
#: Longest term written as is; longer ones are hashed (InnoDB's default maximum is 84).
MAX_TERM_LEN = 64
#: Terms combined pairwise by ``fts5_pairs``/``boolean_pairs`` (8 terms: 28 pairs).
PAIR_TERMS = 8

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

# Scripts written without spaces between words. Ranges are explicit so a punctuation mark
# inside a block (such as the katakana middle dot U+30FB) is not mistaken for a letter.
_RUN_RANGES = (
    "\u0e01-\u0e3a\u0e40-\u0e4e"          # Thai letters, vowels, tone marks
    "\u0e81-\u0ecd"                       # Lao
    "\u1000-\u103f"                       # Myanmar letters and signs
    "\u1100-\u11ff"                       # Hangul jamo
    "\u1780-\u17d3"                       # Khmer letters and signs
    "\u2e80-\u2fdf"                       # CJK and Kangxi radicals
    "\u3005-\u3007\u3021-\u3029\u3038-\u303b"  # 々〆〇, Hangzhou numerals
    "\u3041-\u3096\u3099-\u309f"          # Hiragana (with voicing marks)
    "\u30a1-\u30fa\u30fc-\u30ff"          # Katakana (not the middle dot)
    "\u3105-\u312f\u3131-\u318e\u31a0-\u31bf\u31f0-\u31ff"  # Bopomofo, compat jamo, kana ext.
    "\u3400-\u4dbf\u4e00-\u9fff"          # CJK unified ideographs (+ ext. A)
    "\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff"  # Hangul jamo ext., syllables
    "\uf900-\ufaff"                       # CJK compatibility ideographs
    "\U0001b000-\U0001b16f"               # Kana supplement / extended
    "\U00020000-\U0003134f"               # CJK ext. B–G and compatibility supplement
)


def _mark_class() -> str:
    """Combining marks of the BMP as a character class: they continue a word (Devanagari vowel
    signs are not ``\\w`` in Python's ``re``, and would otherwise split every Hindi word)."""
    out: list[str] = []
    start = prev = -2
    for cp in range(0x300, 0x10000):
        if unicodedata.category(chr(cp)) in ("Mn", "Mc", "Me") and not 0xD800 <= cp <= 0xDFFF:
            if cp != prev + 1:
                if start >= 0:
                    out.append(_rng(start, prev))
                start = cp
            prev = cp
    out.append(_rng(start, prev))
    return "".join(out)


def _rng(a: int, b: int) -> str:
    return re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"


_SEGMENT = re.compile(f"([{_RUN_RANGES}]+)|([^\\W_{_RUN_RANGES}](?:[^\\W_{_RUN_RANGES}]|[{_mark_class()}])*)")
_RUN = re.compile(f"[{_RUN_RANGES}]+")
_ACCENTS = re.compile("[\u0300-\u036f]+")
_TERM = re.compile(r"[a-z0-9]{3,64}")

# Dropped from a query only when the query has other terms: they match nearly every English
# document, which makes an OR query slow and its ranking noisy, and they carry no topic.
_QUERY_STOPWORDS = frozenset(
    "a an and are as at be but by do for from had has have i in is it its of on or that the this to "
    "was we were what when where which who will with you your".split())


def normalize(text: str) -> str:
    """NFKC, case folding, and Latin/Greek/Cyrillic accents removed. Idempotent."""
    s = unicodedata.normalize("NFKC", text).casefold()
    if s.isascii():
        return s
    d = unicodedata.normalize("NFKD", s)
    if _ACCENTS.search(d) is None:
        return unicodedata.normalize("NFKC", s)  # casefold may leave non-NFKC output (rare)
    # NFKD splits Hangul syllables into jamo; NFKC recomposes them, so Korean survives intact.
    return unicodedata.normalize("NFKC", _ACCENTS.sub("", d))


def is_run(surface: str) -> bool:
    """True when ``surface`` is entirely in scripts written without spaces (CJK, Hangul, Thai …)."""
    return _RUN.fullmatch(surface) is not None


def _cp36(ch: str) -> str:
    cp = ord(ch)
    return _B36[cp // 46656] + _B36[cp // 1296 % 36] + _B36[cp // 36 % 36] + _B36[cp % 36]


def _cap(term: str) -> str:
    if len(term) <= MAX_TERM_LEN:
        return term
    return "g" + hashlib.blake2b(term.encode("ascii"), digest_size=10).hexdigest()


def word_term(word: str) -> str:
    """The term of one normalized word (see the module docstring for the encoding)."""
    if word.isascii():
        return _cap("j" + word + "j" if len(word) == 1 else "x" + word)
    return _cap("z" + "".join(_cp36(c) for c in word))


def run_terms(run: str) -> list[str]:
    """Bigram terms of a run plus the unigram of its last character."""
    codes = [_cp36(c) for c in run]
    out = ["k" + a + b for a, b in zip(codes, codes[1:])]
    out.append("k" + codes[-1])
    return out


@dataclasses.dataclass(frozen=True)
class Segment:
    """One word, or one run of a script written without spaces, of the normalized text."""

    surface: str
    is_run: bool


def segments(text: str) -> Iterator[Segment]:
    """Words and runs of ``normalize(text)``, in order."""
    for m in _SEGMENT.finditer(normalize(text)):
        run, word = m.group(1), m.group(2)
        yield Segment(run, True) if run else Segment(word, False)


def index_terms(text: str | None, *, max_chars: int = MAX_INDEX_CHARS) -> str:
    """The space-separated term string to store in the indexed column ('' for no text).

    Term frequencies are kept (a word said three times is three terms) so BM25 / InnoDB
    relevance rank as they would on plain words. Only the first ``max_chars`` characters count.
    """
    if not text:
        return ""
    out: list[str] = []
    for seg in segments(text[:max_chars]):
        if seg.is_run:
            out += run_terms(seg.surface)
        else:
            out.append(word_term(seg.surface))
    return " ".join(out)


def document_terms(head: str | None, body: str | None, *, head_weight: int = 3) -> str:
    """The term string of an item with a weighted head (a note's title, tags and headings) and a
    body: the head's terms ``head_weight`` times, then the body's. Repetition is how the head
    weighs more with one indexed column on both backends (BM25 and InnoDB's TF-IDF both rank a
    more frequent term higher), where per-column weights would cost InnoDB three FULLTEXT
    lookups per query."""
    if not isinstance(head_weight, int) or head_weight < 1:
        raise ValueError(f"head_weight must be a positive integer, got {head_weight!r}")
    head_terms = index_terms(head)
    body_terms = index_terms(body)
    return " ".join([head_terms] * head_weight * bool(head_terms) + [body_terms] * bool(body_terms))


@dataclasses.dataclass(frozen=True)
class KeywordQuery:
    """A sanitized keyword query: terms to match exactly, terms to match as prefixes, and the
    normalized surface forms (for snippets and local scoring). Never empty: ``keyword_query``
    returns None instead."""

    exact: tuple[str, ...]
    prefix: tuple[str, ...]
    surfaces: tuple[str, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        return self.exact + self.prefix

    def fts5(self, require_all: bool = False) -> str:
        """An FTS5 MATCH expression (``"t1" OR "t2"* …``); bind it as a parameter.

        Default: any term matches and BM25 ranks items with more (and rarer) terms higher.
        ``require_all`` joins the terms with ``AND``: far cheaper when a term is common (measured
        ~10× at 100k items), so a caller can try it first and fall back to any-term.
        """
        parts = [f'"{t}"' for t in self.exact] + [f'"{t}"*' for t in self.prefix]
        return (" AND " if require_all else " OR ").join(parts)

    def _pair_parts(self, max_terms: int) -> list[tuple[str, str]] | None:
        terms = [(t, "") for t in self.exact] + [(t, "*") for t in self.prefix]
        terms = terms[:max_terms]
        if len(terms) < 3:
            return None  # with two terms a pair is every term: nothing between all and any
        return [(a, b) for i, a in enumerate(terms) for b in terms[i + 1:]]  # type: ignore[misc]

    def fts5_pairs(self, max_terms: int = PAIR_TERMS) -> str | None:
        """FTS5: items holding at least two of the (first ``max_terms``) terms, or None for
        queries of fewer than three terms. The middle step between every term and any term:
        selective (cheap to rank) and better evidence than one shared common word."""
        pairs = self._pair_parts(max_terms)
        if pairs is None:
            return None
        return " OR ".join(f'("{a[0]}"{a[1]} AND "{b[0]}"{b[1]})' for a, b in pairs)  # type: ignore[index]

    def boolean_pairs(self, max_terms: int = PAIR_TERMS) -> str | None:
        """MySQL/MariaDB boolean mode: the same as ``fts5_pairs``."""
        pairs = self._pair_parts(max_terms)
        if pairs is None:
            return None
        return " ".join(f"(+{a[0]}{a[1]} +{b[0]}{b[1]})" for a, b in pairs)  # type: ignore[index]

    def boolean(self, require_all: bool = False) -> str:
        """A MySQL/MariaDB ``AGAINST(... IN BOOLEAN MODE)`` string; bind it as a parameter.

        Default: any term matches, more matching terms rank higher. ``require_all`` prefixes every
        term with ``+`` (every term required), as ``fts5(require_all=True)``.
        """
        plus = "+" if require_all else ""
        return " ".join([plus + t for t in self.exact] + [plus + t + "*" for t in self.prefix])


def keyword_query(text: object, *, max_terms: int = MAX_QUERY_TERMS) -> KeywordQuery | None:
    """Turn any user input into a safe query, or None when nothing searchable is left.

    Never raises: a non-string is searched by its ``str``; only the first ``MAX_QUERY_CHARS``
    characters count; NUL bytes, lone surrogates, punctuation and FTS operators (``" * - + @
    NEAR OR ( ) :``) are separators or plain words (``OR`` becomes the word ``or``), never syntax.
    Terms are deduplicated in order of appearance; English stopwords are dropped unless they
    are all the query has.
    """
    try:
        raw = text if isinstance(text, str) else str(text)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not break recall
        return None
    exact: dict[str, None] = {}
    prefix: dict[str, None] = {}
    surfaces: dict[str, None] = {}
    stop_exact: dict[str, None] = {}
    stop_surfaces: dict[str, None] = {}
    for seg in segments(raw[:MAX_QUERY_CHARS]):
        if len(exact) + len(prefix) >= max_terms:
            break
        if not seg.is_run:
            target, surf = (stop_exact, stop_surfaces) if seg.surface in _QUERY_STOPWORDS else (exact, surfaces)
            target[word_term(seg.surface)] = None
            surf[seg.surface] = None
        elif len(seg.surface) == 1:
            prefix["k" + _cp36(seg.surface)] = None
            surfaces[seg.surface] = None
        else:
            for term in run_terms(seg.surface)[:-1]:  # bigrams only: the unigram would over-match
                exact[term] = None
            surfaces[seg.surface] = None
    if not exact and not prefix:
        exact, surfaces = stop_exact, stop_surfaces
    if not exact and not prefix:
        return None
    exact_t = tuple(exact)[:max_terms]
    return KeywordQuery(exact_t, tuple(prefix)[:max(0, max_terms - len(exact_t))], tuple(surfaces))


def local_score(query: KeywordQuery, terms: str) -> float:
    """A small in-process relevance (0 = no match) of an ``index_terms`` string, for answering
    without a database (pending events, vault files during an outage): the number of matching
    query terms, plus a sublinear bonus for repetitions. Not comparable across backends."""
    if not terms:
        return 0.0
    counts = Counter(terms.split())
    score = 0.0
    for t in query.exact:
        n = counts.get(t, 0)
        if n:
            score += 1.0 + 0.1 * min(n - 1, 10)
    for p in query.prefix:
        n = sum(c for t, c in counts.items() if t.startswith(p))
        if n:
            score += 1.0 + 0.1 * min(n - 1, 10)
    return score


def is_valid_term(term: str) -> bool:
    """True for a string this module could have produced as a term (used by tests and checks)."""
    return _TERM.fullmatch(term) is not None and term[0] in "xjzkg"
