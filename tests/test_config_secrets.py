"""Secrets of the DSN: the password *and* secret query parameters never show in a repr, a health
report, a log line, a StoreError or the traceback chain behind one. Plus small config fixes."""

from __future__ import annotations

import logging
import tomllib
import traceback
from pathlib import Path

import pymysql
import pytest

from memory import ConfigError, MemoryService, StoreError, load_config, mask_dsn
from memory._config import dsn_secrets, is_secret_param, redact
from memory.store import create_store

from .conftest import MYSQL_URL, require_mysql

REPO = Path(__file__).resolve().parents[1]
SECRET = "Sup3r-S3cret"


@pytest.mark.parametrize("param", ["password", "passwd", "pwd", "PWD", "secret", "token", "api_key", "access_token",
                                   "Access_Token", "client_secret", "auth_token", "ssl_key"])
def test_secret_query_parameters_are_masked(param: str) -> None:
    masked = mask_dsn(f"mysql+pymysql://app@db.example:3306/mem?charset=utf8mb4&{param}={SECRET}")
    assert SECRET not in masked
    assert masked == f"mysql+pymysql://app@db.example:3306/mem?charset=utf8mb4&{param}=***"
    assert is_secret_param(param)


def test_other_query_parameters_and_the_password_keep_their_old_form() -> None:
    assert mask_dsn("mysql+pymysql://app:pw@h/db?charset=utf8mb4&connect_timeout=3") == \
        "mysql+pymysql://app:***@h/db?charset=utf8mb4&connect_timeout=3"
    assert mask_dsn("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert mask_dsn("mysql+pymysql://h/db?a=1&a=2") == "mysql+pymysql://h/db?a=1&a=2"
    assert not any(is_secret_param(p) for p in ("charset", "connect_timeout", "ssl_ca", "local_infile"))


def test_secret_values_are_scrubbed_in_every_encoding() -> None:
    dsn = "mysql+pymysql://app:p%40ss%20w@h/db?token=a%2Fb&charset=utf8mb4"
    secrets = dsn_secrets(dsn)
    for form in ("p@ss w", "p%40ss%20w", "a/b", "a%2Fb"):
        assert form in secrets
    assert redact("auth p@ss w failed, token a/b, a%2Fb", secrets) == "auth *** failed, token ***, ***"
    assert "utf8mb4" not in secrets


def test_config_repr_and_safe_dsn_hide_query_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_DATABASE_DSN", f"mysql+pymysql://app@127.0.0.1:1/db?password={SECRET}&token=t-{SECRET}")
    cfg = load_config({"database": {"dsn": "sqlite:///x.db"}, "failure_queue": {"path": str(tmp_path / "q")}})
    assert SECRET in cfg.database.dsn  # the driver needs it
    for text in (repr(cfg), str(cfg), repr(cfg.database), cfg.database.safe_dsn):
        assert SECRET not in text


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:'passwd' is deprecated:DeprecationWarning")
@pytest.mark.parametrize("form", ["userinfo", "password", "passwd"])
def test_driver_errors_never_carry_the_secret(form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A real MariaDB refusing a wrong password: message, traceback chain, health, repr, logs."""
    require_mysql()
    from sqlalchemy.engine import make_url

    url = make_url(MYSQL_URL)
    hostport = f"{url.host or '127.0.0.1'}:{url.port or 3306}"
    dsn = {"userinfo": f"mysql+pymysql://root:{SECRET}@{hostport}/mysql",
           "password": f"mysql+pymysql://root@{hostport}/mysql?password={SECRET}",
           "passwd": f"mysql+pymysql://root@{hostport}/mysql?passwd={SECRET}"}[form]
    monkeypatch.setenv("MEMORY_DATABASE_DSN", dsn)
    cfg = load_config({"database": {"connect_timeout": 3}, "failure_queue": {"path": str(tmp_path / "q"),
                                                                             "retry_base_delay_s": 0.05},
                       "vault": {"root_path": str(tmp_path / "v"), "watch": False}})
    store = create_store(cfg.database)
    try:
        with pytest.raises(StoreError) as err:
            store.initialize()
        assert "1045" in str(err.value)  # the real refusal, with its text...
        assert SECRET not in str(err.value)  # ...but never the secret
        assert SECRET not in "".join(traceback.format_exception(err.value))  # nor anywhere in the chain
    finally:
        store.dispose()
    with caplog.at_level(logging.DEBUG, logger="memory"):
        svc = MemoryService(cfg)
        svc.append_event({"x": 1}, "s")
        svc.flush(1.0)  # the writer tries, fails, logs
        report = svc.health()
        svc.close(timeout=0.5)
    assert SECRET not in repr(svc) and SECRET not in str(report) and SECRET not in caplog.text


def test_a_secret_in_a_driver_message_is_scrubbed_from_the_whole_chain(tmp_path: Path) -> None:
    # No real driver echoes a password that we know of; this pins the guarantee should one ever
    # do so. The fake is at the lowest layer: the driver's own exception type, raised inside the
    # store's error boundary.
    cfg = load_config({"database": {"dsn": f"mysql+pymysql://app:{SECRET}@127.0.0.1:1/db?api_key=k-{SECRET}"}})
    store = create_store(cfg.database)
    with pytest.raises(StoreError) as err, store._errors():
        try:
            raise pymysql.err.OperationalError(2003, f"cannot connect as app:{SECRET} with k-{SECRET}")
        except pymysql.err.OperationalError as inner:
            raise RuntimeError(f"wrapped: {SECRET}") from inner
    text = "".join(traceback.format_exception(err.value))
    assert SECRET not in text and "cannot connect as app:***" in text
    store.dispose()


def test_env_dsn_does_not_report_the_file_dsn_as_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MEMORY_DATABASE_DSN", f"sqlite:///{tmp_path / 'env.db'}")
    p = tmp_path / "m.yaml"
    p.write_text("database:\n  dsn: sqlite:///file.db\n  pool_size: 2\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="memory.config"):
        cfg = load_config(p)
    assert cfg.database.url.database == str(tmp_path / "env.db")
    assert cfg.warnings == () and "unknown config keys" not in caplog.text
    p.write_text("database:\n  dsn: sqlite:///file.db\n  dns: typo\n", encoding="utf-8")
    assert load_config(p).warnings == ("database.dns",)  # real typos are still reported


@pytest.mark.parametrize("dsn", [f"mysql+pymysql://app:{SECRET}@127.0.0.1/db?connect_timeout=soon&password={SECRET}",
                                 f"mysql+pymysql://app@127.0.0.1/db?read_timeout=x&token={SECRET}",
                                 f"sqlite:///m.db?timeout=later&secret={SECRET}"])
def test_a_dsn_the_driver_cannot_take_is_a_config_error(dsn: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"database": {"dsn": dsn}})
    assert err.value.key == "database.dsn" and "ValueError" in str(err.value) and SECRET not in str(err.value)


def test_a_driver_argument_problem_is_caught_at_load_not_at_construction(tmp_path: Path) -> None:
    # Before: load_config accepted it and MemoryService() raised a ValueError echoing the value.
    with pytest.raises(ConfigError, match=r"database\.dsn: .*ValueError"):
        MemoryService.from_config({"database": {"dsn": "mysql+pymysql://app@127.0.0.1/db?connect_timeout=soon"},
                                   "failure_queue": {"path": str(tmp_path / "q")}})


def test_pyproject_license_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["license"] == "MIT"  # a table here is deprecated by setuptools (warning on install)
    req = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert req and req[0].startswith("setuptools>=")
    lower = int(req[0].split(">=")[1].split(",")[0].split(".")[0])
    assert lower >= 77  # the first setuptools that accepts an SPDX string for project.license


@pytest.mark.parametrize("dsn", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_sqlite_database_is_a_clear_config_error(dsn: str, tmp_path: Path) -> None:
    # Before: accepted, then the service's constructor raised a TypeError from create_engine.
    with pytest.raises(ConfigError, match=r"database\.dsn: expected a SQLite file"):
        MemoryService.from_config({"database": {"dsn": dsn}, "failure_queue": {"path": str(tmp_path / "q")}})
