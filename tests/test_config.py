from __future__ import annotations

import logging
from pathlib import Path

import pytest

from memory import ConfigError, MemoryService, load_config, mask_dsn

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "memory.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_config_loads_with_every_section() -> None:
    cfg = load_config(REPO / "config" / "memory.yaml")
    assert cfg.database.dialect == "sqlite"
    assert cfg.vault.root_path == (REPO / "vault").resolve()
    assert cfg.failure_queue.path == (REPO / ".memory" / "queue").resolve()
    assert cfg.failure_queue.fsync == "interval"
    assert cfg.warnings == ()


def test_bad_value_names_file_key_expected_and_found(tmp_path: Path) -> None:
    p = write(tmp_path, "failure_queue:\n  max_retries: abc\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == f"{p}: failure_queue.max_retries: expected an integer >= 1, got 'abc'"
    assert err.value.key == "failure_queue.max_retries"


@pytest.mark.parametrize("section,key,value,expected", [
    ("database", "pool_size", "0", "expected an integer >= 1, got 0"),
    ("database", "connect_timeout", "-1", "expected a number > 0, got -1"),
    ("failure_queue", "fsync", "sometimes", "expected one of always, interval, never, got 'sometimes'"),
    ("vault", "watch", "maybe", "expected true or false, got 'maybe'"),
    ("failure_queue", "max_in_memory", "true", "expected an integer >= 1, got True"),
])
def test_each_kind_of_bad_value(tmp_path: Path, section: str, key: str, value: str, expected: str) -> None:
    p = write(tmp_path, f"{section}:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=f"{section}.{key}: {expected}"):
        load_config(p)


def test_missing_empty_and_broken_files_get_clear_messages(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="the config file is empty"):
        load_config(write(tmp_path, "# only a comment\n"))
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+"):
        load_config(write(tmp_path, "database:\n  dsn: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))


def test_unknown_keys_warn_with_their_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = write(tmp_path, "failure_queue:\n  max_retrys: 3\ndatabse:\n  dsn: x\n")
    with caplog.at_level(logging.WARNING, logger="memory.config"):
        cfg = load_config(p)
    assert set(cfg.warnings) == {"failure_queue.max_retrys", "databse"}
    assert "failure_queue.max_retrys" in caplog.text and "databse" in caplog.text


def test_env_substitution_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQ_RETRIES", "7")
    monkeypatch.delenv("MQ_UNSET", raising=False)
    p = write(tmp_path, "failure_queue:\n  max_retries: ${MQ_RETRIES}\n  max_in_memory: ${MQ_UNSET:-42}\n")
    cfg = load_config(p)
    assert cfg.failure_queue.max_retries == 7
    assert cfg.failure_queue.max_in_memory == 42
    with pytest.raises(ConfigError, match="failure_queue.max_retries: expected environment variable MQ_UNSET"):
        load_config(write(tmp_path, "failure_queue:\n  max_retries: ${MQ_UNSET}\n"))


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    p = tmp_path / "conf" / "m.yaml"
    p.write_text("database:\n  dsn: sqlite:///data/m.db\nvault:\n  root_path: ../v\n", encoding="utf-8")
    monkeypatch.chdir("/")
    cfg = load_config(p)
    assert cfg.database.url.database == str(tmp_path / "conf" / "data" / "m.db")
    assert cfg.vault.root_path == tmp_path / "v"


def test_env_overrides_dsn_and_password_never_leaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-Pa55"
    monkeypatch.setenv("MEMORY_DATABASE_DSN", f"mysql+pymysql://app:{secret}@127.0.0.1:1/db")
    cfg = load_config(write(tmp_path, "database:\n  dsn: sqlite:///x.db\n"
                                      f"failure_queue:\n  path: {tmp_path / 'q'}\n"))
    assert cfg.database.dialect == "mysql"
    assert secret in cfg.database.dsn  # the engine needs it...
    for text in (repr(cfg), repr(cfg.database), str(cfg), cfg.database.safe_dsn):
        assert secret not in text  # ...nothing that gets printed has it
    assert "***" in cfg.database.safe_dsn
    with caplog.at_level(logging.DEBUG, logger="memory"):
        svc = MemoryService(cfg)
        svc.append_event({"x": 1}, "s")
        report = svc.health()
        svc.close(timeout=0.5)
    assert secret not in repr(svc) and secret not in str(report) and secret not in caplog.text
    assert mask_dsn("not a url") == "<unparsable dsn>"


def test_unparsable_dsn_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "database:\n  dsn: 'postgresql://u:hunter2@h/db'\n"))
    assert "hunter2" not in str(err.value) and "database.dsn" in str(err.value)
