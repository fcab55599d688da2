"""The ``recall:`` config section: defaults, every key's valid and invalid values, durations,
the shipped file, old files with ``vector:``, and the hand-off to fusion."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path

import pytest
import yaml

from memory import ConfigError, load_config
from memory._config import (Config, DatabaseConfig, FailureQueueConfig, LoggingConfig, RecallConfig, VaultConfig,
                            parse_duration)
from memory.index._extract import event_text
from memory.index._fusion import FusionParams

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "memory.yaml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "memory.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def recall_of(tmp_path: Path, body: str) -> RecallConfig:
    return load_config(write(tmp_path, "recall:\n" + body)).recall


# -- defaults -----------------------------------------------------------------------------------

def test_defaults_without_arguments() -> None:
    r = RecallConfig()
    assert (r.enabled, r.embedder, r.hash_dim) == (True, "hash", 256)
    assert r.event_text_fields == ("text", "content", "message", "body")
    assert (r.default_k, r.candidates) == (10, 50)
    assert (r.rrf_k, r.keyword_weight, r.vector_weight) == (60.0, 1.0, 1.0)
    assert r.min_similarity is None
    assert (r.recency_weight, r.recency_half_life_s, r.recency_kinds) == (0.3, 604800.0, ("event",))
    assert (r.head_weight, r.max_fresh) == (3, 500)
    assert (r.indexer_batch_size, r.indexer_interval_ms) == (256, 500)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.hash_dim = 64  # type: ignore[misc]


@pytest.mark.parametrize("text", ["{}\n", "database:\n  pool_size: 5\n", "recall:\n", "recall: {}\n"])
def test_missing_or_empty_section_gives_the_defaults(tmp_path: Path, text: str) -> None:
    cfg = load_config(write(tmp_path, text))
    assert cfg.recall == RecallConfig()
    assert cfg.warnings == ()


def test_config_built_by_hand_needs_no_recall(tmp_path: Path) -> None:
    cfg = Config(database=DatabaseConfig(dsn=f"sqlite:///{tmp_path / 'm.db'}"), vault=VaultConfig(root_path=tmp_path),
                 failure_queue=FailureQueueConfig(path=tmp_path / "q"), logging=LoggingConfig(),
                 vector={}, graph={}, decay={}, health={})
    assert cfg.recall == RecallConfig()


# -- valid values -------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,attr,expected", [
    ("enabled", "false", "enabled", False),
    ("enabled", "'yes'", "enabled", True),
    ("embedder", "minilm", "embedder", "minilm"),
    ("embedder", "none", "embedder", "none"),
    ("hash_dim", "16", "hash_dim", 16),
    ("hash_dim", "4096", "hash_dim", 4096),
    ("hash_dim", "'512'", "hash_dim", 512),
    ("event_text_fields", "[payload.text, parts.0.text]", "event_text_fields", ("payload.text", "parts.0.text")),
    ("event_text_fields", "' body , text,body '", "event_text_fields", ("body", "text")),
    ("event_text_fields", "message", "event_text_fields", ("message",)),
    ("default_k", "1", "default_k", 1),
    ("default_k", "1000", "default_k", 1000),
    ("candidates", "1", "candidates", 1),
    ("candidates", "10000", "candidates", 10000),
    ("rrf_k", "0.5", "rrf_k", 0.5),
    ("rrf_k", "'30'", "rrf_k", 30.0),
    ("keyword_weight", "0", "keyword_weight", 0.0),
    ("keyword_weight", "2.5", "keyword_weight", 2.5),
    ("vector_weight", "0", "vector_weight", 0.0),
    ("vector_weight", "1000000", "vector_weight", 1e6),
    ("min_similarity", "auto", "min_similarity", None),
    ("min_similarity", "AUTO", "min_similarity", None),
    ("min_similarity", "null", "min_similarity", None),
    ("min_similarity", "-1", "min_similarity", -1.0),
    ("min_similarity", "1", "min_similarity", 1.0),
    ("min_similarity", "0.25", "min_similarity", 0.25),
    ("min_similarity", "'0.4'", "min_similarity", 0.4),
    ("recency_weight", "0", "recency_weight", 0.0),
    ("recency_weight", "1", "recency_weight", 1.0),
    ("recency_half_life", "3600", "recency_half_life_s", 3600.0),
    ("recency_half_life", "12h", "recency_half_life_s", 43200.0),
    ("recency_kinds", "[knowledge, event]", "recency_kinds", ("knowledge", "event")),
    ("recency_kinds", "knowledge", "recency_kinds", ("knowledge",)),
    ("recency_kinds", "'event, knowledge, event'", "recency_kinds", ("event", "knowledge")),
    ("recency_kinds", "[]", "recency_kinds", ()),
    ("head_weight", "1", "head_weight", 1),
    ("head_weight", "10", "head_weight", 10),
    ("max_fresh", "0", "max_fresh", 0),
    ("max_fresh", "100000", "max_fresh", 100000),
    ("indexer_batch_size", "1", "indexer_batch_size", 1),
    ("indexer_batch_size", "100000", "indexer_batch_size", 100000),
    ("indexer_interval_ms", "10", "indexer_interval_ms", 10),
    ("indexer_interval_ms", "3600000", "indexer_interval_ms", 3600000),
])
def test_valid_value(tmp_path: Path, key: str, value: str, attr: str, expected: object) -> None:
    r = recall_of(tmp_path, f"  {key}: {value}\n")
    assert getattr(r, attr) == expected
    # Only that field moved off its default.
    assert dataclasses.replace(r, **{attr: getattr(RecallConfig(), attr)}) == RecallConfig()


def test_null_means_the_default_for_every_key(tmp_path: Path) -> None:
    keys = [f.name for f in dataclasses.fields(RecallConfig) if f.name != "recency_half_life_s"]
    body = "".join(f"  {k}: null\n" for k in keys + ["recency_half_life"])
    assert recall_of(tmp_path, body) == RecallConfig()


def test_values_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECALL_DIM", "128")
    monkeypatch.setenv("RECALL_HALF", "2d")
    monkeypatch.delenv("RECALL_UNSET", raising=False)
    r = recall_of(tmp_path, "  hash_dim: ${RECALL_DIM}\n  recency_half_life: ${RECALL_HALF}\n"
                            "  rrf_k: ${RECALL_UNSET:-20}\n  embedder: ${RECALL_UNSET:-none}\n")
    assert (r.hash_dim, r.recency_half_life_s, r.rrf_k, r.embedder) == (128, 172800.0, 20.0, "none")


def test_event_text_fields_are_the_paths_event_text_uses(tmp_path: Path) -> None:
    r = recall_of(tmp_path, "  event_text_fields: 'payload.text, parts.1'\n")
    assert r.event_field_paths() == (("payload", "text"), ("parts", "1"))
    obs = '{"text": "top", "payload": {"text": "nested"}, "parts": ["a", "second"]}'
    assert event_text(obs, r.event_field_paths()) == "nested"
    assert event_text('{"text": "top", "parts": ["a", "second"]}', r.event_field_paths()) == "second"
    assert event_text('{"text": "top"}', r.event_field_paths()) is None


# -- invalid values -----------------------------------------------------------------------------

INT = "an integer in {}"
PATHS = ("a non-empty list of field paths (names joined by '.', e.g. payload.text) "
         "or one comma-separated string")
DURATION = "a duration > 0: seconds, or a number followed by s, m, h, d or w (e.g. 7d, 12h, 30m)"
KINDS = "a list of kinds from knowledge, event (may be empty)"


@pytest.mark.parametrize("key,value,expected,found", [
    ("enabled", "maybe", "true or false", "'maybe'"),
    ("enabled", "2", "true or false", "2"),
    ("embedder", "bert", "one of hash, minilm, none", "'bert'"),
    ("embedder", "Hash", "one of hash, minilm, none", "'Hash'"),
    ("embedder", "''", "a non-empty string", "''"),
    ("embedder", "3", "a non-empty string", "3"),
    ("hash_dim", "15", INT.format("16..4096"), "15"),
    ("hash_dim", "4097", INT.format("16..4096"), "4097"),
    ("hash_dim", "64.0", INT.format("16..4096"), "64.0"),
    ("hash_dim", "true", INT.format("16..4096"), "True"),
    ("hash_dim", "big", INT.format("16..4096"), "'big'"),
    ("event_text_fields", "[]", PATHS, "[] (event text field paths: at least one path is required)"),
    ("event_text_fields", "''", PATHS, "'' (event text field path must be a non-empty string, got '')"),
    ("event_text_fields", "'text,'", PATHS, "'text,' (event text field path must be a non-empty string, got '')"),
    ("event_text_fields", "[text, 5]", PATHS, "['text', 5] (event text field path must be a non-empty string, got 5)"),
    ("event_text_fields", "[a..b]", PATHS,
     "['a..b'] (invalid event text field path 'a..b': expected names joined by '.')"),
    ("event_text_fields", "'pay load'", PATHS,
     "'pay load' (invalid event text field path 'pay load': expected names joined by '.')"),
    ("event_text_fields", "{text: 1}", PATHS, "{'text': 1}"),
    ("event_text_fields", "7", PATHS, "7"),
    ("default_k", "0", INT.format("1..1000"), "0"),
    ("default_k", "1001", INT.format("1..1000"), "1001"),
    ("candidates", "0", INT.format("1..10000"), "0"),
    ("candidates", "10001", INT.format("1..10000"), "10001"),
    ("rrf_k", "0", "a number > 0", "0"),
    ("rrf_k", "-5", "a number > 0", "-5"),
    ("rrf_k", ".inf", "a number > 0", "inf"),
    ("rrf_k", "'nan'", "a number > 0", "'nan'"),
    ("rrf_k", "sixty", "a number > 0", "'sixty'"),
    ("rrf_k", "true", "a number > 0", "True"),
    ("rrf_k", "1" + "0" * 400, "a number > 0", "1" + "0" * 400),
    ("keyword_weight", "-0.1", "a number in [0, 1000000]", "-0.1"),
    ("keyword_weight", "1000001", "a number in [0, 1000000]", "1000001"),
    ("keyword_weight", "[1]", "a number in [0, 1000000]", "[1]"),
    ("vector_weight", "-1", "a number in [0, 1000000]", "-1"),
    ("vector_weight", "heavy", "a number in [0, 1000000]", "'heavy'"),
    ("min_similarity", "1.5", "auto, null or a number in [-1, 1]", "1.5"),
    ("min_similarity", "-1.01", "auto, null or a number in [-1, 1]", "-1.01"),
    ("min_similarity", "automatic", "auto, null or a number in [-1, 1]", "'automatic'"),
    ("min_similarity", "false", "auto, null or a number in [-1, 1]", "False"),
    ("recency_weight", "1.01", "a number in [0, 1]", "1.01"),
    ("recency_weight", "-0.5", "a number in [0, 1]", "-0.5"),
    ("recency_half_life", "0", DURATION, "0"),
    ("recency_half_life", "-3", DURATION, "-3"),
    ("recency_half_life", "0d", DURATION, "'0d'"),
    ("recency_half_life", "7x", DURATION, "'7x'"),
    ("recency_half_life", "d7", DURATION, "'d7'"),
    ("recency_half_life", "week", DURATION, "'week'"),
    ("recency_half_life", "''", DURATION, "''"),
    ("recency_half_life", ".inf", DURATION, "inf"),
    ("recency_half_life", "true", DURATION, "True"),
    ("recency_half_life", "[7d]", DURATION, "['7d']"),
    ("recency_half_life", "1" + "0" * 400, DURATION, "1" + "0" * 400),
    ("recency_kinds", "[note]", KINDS, "['note']"),
    ("recency_kinds", "[event, 1]", KINDS, "['event', 1]"),
    ("recency_kinds", "''", KINDS, "''"),
    ("recency_kinds", "{event: 1}", KINDS, "{'event': 1}"),
    ("head_weight", "0", INT.format("1..10"), "0"),
    ("head_weight", "11", INT.format("1..10"), "11"),
    ("max_fresh", "-1", INT.format("0..100000"), "-1"),
    ("max_fresh", "100001", INT.format("0..100000"), "100001"),
    ("indexer_batch_size", "0", INT.format("1..100000"), "0"),
    ("indexer_batch_size", "100001", INT.format("1..100000"), "100001"),
    ("indexer_interval_ms", "9", INT.format("10..3600000"), "9"),
    ("indexer_interval_ms", "3600001", INT.format("10..3600000"), "3600001"),
    ("indexer_interval_ms", "0.5s", INT.format("10..3600000"), "'0.5s'"),
])
def test_invalid_value_names_file_key_expected_and_found(tmp_path: Path, key: str, value: str, expected: str,
                                                         found: str) -> None:
    p = write(tmp_path, f"recall:\n  {key}: {value}\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == f"{p}: recall.{key}: expected {expected}, got {found}"
    assert err.value.key == f"recall.{key}" and err.value.source == str(p)


def test_a_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    p = write(tmp_path, "recall: [enabled]\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == f"{p}: recall: expected a mapping, got ['enabled']"


def test_unknown_recall_keys_warn_like_other_sections(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = write(tmp_path, "recall:\n  default_K: 5\n  half_life: 3d\n  candidates: 20\n")
    with caplog.at_level(logging.WARNING, logger="memory.config"):
        cfg = load_config(p)
    assert set(cfg.warnings) == {"recall.default_K", "recall.half_life"}
    assert "unknown config keys ignored" in caplog.text
    assert "recall.default_K" in caplog.text and "recall.half_life" in caplog.text
    assert cfg.recall == dataclasses.replace(RecallConfig(), candidates=20)


# -- durations ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value,seconds", [
    (1, 1.0), (0.25, 0.25), (604800, 604800.0), ("90", 90.0), ("1.5", 1.5), ("1e3", 1000.0),
    ("45s", 45.0), ("30m", 1800.0), ("12h", 43200.0), ("7d", 604800.0), ("2w", 1209600.0),
    ("1.5d", 129600.0), (".5h", 1800.0), (" 3 d ", 259200.0), ("10D", 864000.0), ("5min", 300.0),
    ("2hrs", 7200.0), ("3days", 259200.0), ("1wk", 604800.0), ("20sec", 20.0),
])
def test_duration_parsing(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [0, -1, 0.0, "0s", "-2d", "7y", "7 days ago", "d", "", "1e400", "nan", "inf",
                                   math.inf, math.nan, True, None, [1], "1h30m",
                                   10 ** 400, "1" + "0" * 400 + "d"])
def test_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value,seconds", [("45s", 45.0), ("30m", 1800.0), ("2w", 1209600.0), ("7200", 7200.0),
                                           ("0.5", 0.5)])
def test_duration_in_the_file(tmp_path: Path, value: str, seconds: float) -> None:
    r = recall_of(tmp_path, f"  recency_half_life: {value}\n")
    assert r.recency_half_life_s == pytest.approx(seconds)
    assert r.fusion_params().half_life_s == pytest.approx(seconds)


# -- the shipped file ---------------------------------------------------------------------------

def test_shipped_config_gives_the_documented_defaults() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.recall == RecallConfig()
    assert cfg.vector == {}
    assert cfg.warnings == ()


def _recall_block(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("recall:")
    block = []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        block.append(line)
    return block


def test_shipped_file_documents_every_recall_key() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert "vector:" not in yaml.safe_load(text)
    block = _recall_block(text)
    keys = [m.group(1) for m in (re.match(r"  ([a-z_]+):", line) for line in block) if m]
    fields = {f.name for f in dataclasses.fields(RecallConfig)} - {"recency_half_life_s"} | {"recency_half_life"}
    assert set(keys) == fields and len(keys) == len(fields)
    # Each key sits under a comment (two keys of one pair may share one, as in the other sections).
    for i, line in enumerate(block):
        if re.match(r"  [a-z_]+:", line):
            above = block[i - 1].strip()
            assert above.startswith("#") or re.match(r"[a-z_]+:", above), f"undocumented: {line}"
    comments = " ".join(line.strip() for line in block if line.strip().startswith("#"))
    assert "session_key" in comments and "every session" in comments
    for word in ("hash", "minilm", "none", "7d", "12h", "milliseconds"):
        assert word in comments


def test_other_sections_are_unchanged_by_the_recall_block() -> None:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert list(data)[:3] == ["database", "vault", "recall"] and "failure_queue" in data and "logging" in data
    assert data["health"] == {"latency_warn_ms": 1000, "backlog_warn": 1}
    # The graph:, decay: and health: sections show their defaults: loading them changes nothing.
    from memory import load_config

    shipped = load_config(SHIPPED)
    assert shipped.graph == load_config({}).graph and shipped.decay == load_config({}).decay
    assert shipped.health == load_config({}).health


# -- old files with vector: ---------------------------------------------------------------------

def test_old_config_with_empty_vector_still_loads_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = SHIPPED.read_text(encoding="utf-8")
    lines = old.splitlines(keepends=True)
    start = lines.index("recall:\n")
    end = start + 1 + len(_recall_block(old))
    old = "".join(lines[:start]) + "vector:\n  # Optional semantic index.\n  {}\n\n" + "".join(lines[end:])
    assert "recall:" not in old and "vector:" in old
    (tmp_path / "config").mkdir()
    p = tmp_path / "config" / "memory.yaml"
    p.write_text(old, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="memory.config"):
        cfg = load_config(p)
    assert cfg.vector == {} and cfg.recall == RecallConfig()
    assert cfg.warnings == () and "vector" not in caplog.text


def test_old_config_with_a_vector_section_loads_with_a_warning(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    p = write(tmp_path, "vector:\n  model: minilm\n  dim: 384\nrecall:\n  embedder: none\n")
    with caplog.at_level(logging.WARNING, logger="memory.config"):
        cfg = load_config(p)
    assert cfg.vector == {"model": "minilm", "dim": 384}  # kept as it was for the tools that read it
    assert cfg.recall == dataclasses.replace(RecallConfig(), embedder="none")  # not taken from vector:
    assert cfg.warnings == ("vector",)
    assert "vector: section is replaced by recall:" in caplog.text and "(model, dim)" in caplog.text


def test_a_vector_section_that_is_not_a_mapping_is_still_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "vector: on\n")
    with pytest.raises(ConfigError, match=r"vector: expected a mapping, got True"):
        load_config(p)


# -- fusion -------------------------------------------------------------------------------------

def test_fusion_params_round_trip(tmp_path: Path) -> None:
    r = recall_of(tmp_path, "  rrf_k: 30\n  keyword_weight: 0.5\n  vector_weight: 2\n  recency_weight: 0.75\n"
                            "  recency_half_life: 1d\n  recency_kinds: [knowledge, event]\n")
    fp = r.fusion_params()
    assert isinstance(fp, FusionParams)
    assert fp == FusionParams(rrf_k=30.0, keyword_weight=0.5, vector_weight=2.0, recency_weight=0.75,
                              half_life_s=86400.0, recency_kinds=frozenset({"knowledge", "event"}))
    back = dataclasses.replace(RecallConfig(), rrf_k=fp.rrf_k, keyword_weight=fp.keyword_weight,
                               vector_weight=fp.vector_weight, recency_weight=fp.recency_weight,
                               recency_half_life_s=fp.half_life_s, recency_kinds=("knowledge", "event"))
    assert back == r and back.fusion_params() == fp


def test_default_fusion_params_are_fusions_defaults() -> None:
    assert RecallConfig().fusion_params() == FusionParams()


def test_empty_recency_kinds_reach_fusion_as_an_empty_set(tmp_path: Path) -> None:
    assert recall_of(tmp_path, "  recency_kinds: []\n").fusion_params().recency_kinds == frozenset()


def test_extreme_valid_values_are_accepted_by_fusion(tmp_path: Path) -> None:
    r = recall_of(tmp_path, "  rrf_k: 0.001\n  keyword_weight: 0\n  vector_weight: 1000000\n  recency_weight: 1\n"
                            "  recency_half_life: 1s\n  recency_kinds: [knowledge]\n")
    fp = r.fusion_params()
    assert (fp.rrf_k, fp.keyword_weight, fp.vector_weight, fp.recency_weight, fp.half_life_s) == (
        0.001, 0.0, 1e6, 1.0, 1.0)


def test_hand_built_invalid_instance_is_refused_by_fusion() -> None:
    with pytest.raises(ValueError, match="recall.recency_kinds"):
        dataclasses.replace(RecallConfig(), recency_kinds=("note",)).fusion_params()


def test_embedder_threads() -> None:
    from memory._config import parse_config

    assert parse_config({"recall": {"embedder_threads": 1}}).recall.embedder_threads == 1
    assert parse_config({}).recall.embedder_threads == 0
    with pytest.raises(ConfigError, match=r"recall\.embedder_threads"):
        parse_config({"recall": {"embedder_threads": -1}})
