"""The README's main job, in the suite: ``memory demo`` on SQLite and on MariaDB; CLI help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from memory.cli import main


def run_demo(tmp_path: Path, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "memory.cli", "demo", "--workdir", str(tmp_path / "work"),
                          "--json", *extra], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout)


def check_summary(s: dict) -> None:
    assert s["ok"] is True and s["problems"] == []
    people = {k: v for k, v in s["sessions"].items() if k != "system"}
    assert len(people) == 4 and sum(v["observations"] for v in s["sessions"].values()) >= 45
    assert all(v["events"] == v["observations"] for v in people.values())
    assert s["sessions"]["system"]["events"] == 0
    assert sum(v["turns_error"] for v in people.values()) == 4  # two [fail], two [error]
    assert s["outage"]["pending_in_outage"] > 0 and s["outage"]["committed_during"] == 0
    assert s["health"]["pending"] == 0 and s["queue"]["dropped"] == {}
    assert s["vault"]["files"] == 7
    r = s["recall"]  # the agent answers from recall, each session from its own messages only
    assert r["replies"] == sum(v["turns_ok"] for v in people.values()) + 2  # + the two [error] replies
    assert r["from_notes"] > r["replies"] // 2 and r["earlier_messages"] >= 3
    assert r["other_sessions_shown"] == 0
    assert r["example"] is not None and 'Earlier you said: "' in r["example"]["reply"]


def test_demo_on_sqlite(tmp_path: Path) -> None:
    check_summary(run_demo(tmp_path))
    again = run_demo(tmp_path)  # a second run in the same folder checks only its own records
    check_summary(again)


@pytest.mark.integration
def test_demo_on_mariadb(tmp_path: Path, mysql_dsn: str) -> None:
    check_summary(run_demo(tmp_path, "--dsn", mysql_dsn))


def test_demo_human_output(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "memory.cli", "demo", "--workdir", str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "OK: every observation, turn and outcome is in the database" in out.stdout
    assert "the database outage" in out.stdout
    assert "0 showed another session's" in " ".join(out.stdout.split())  # rich wraps at the terminal width


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, cmd in group.commands.items():
        found.append((f"{prefix}{name}", cmd))
        if isinstance(cmd, click.Group):
            found += commands(cmd, f"{prefix}{name} ")
    return found


def test_every_command_has_help_text() -> None:
    cmds = commands(main)
    assert {"demo", "db upgrade", "queue status", "dead-letter list", "dead-letter requeue", "dead-letter purge",
            "vault sync", "vault watch", "vault check", "health"} <= {n for n, _ in cmds}
    for name, cmd in cmds:
        assert cmd.help and cmd.help.strip(), f"`memory {name}` has no help text"
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"`memory {name}` option {param.name} has no help"


def test_config_error_is_one_clean_cli_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("failure_queue:\n  max_retries: abc\n")
    out = subprocess.run([sys.executable, "-m", "memory.cli", "queue", "status", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip() == f"Error: {bad}: failure_queue.max_retries: expected an integer >= 1, got 'abc'"
    assert "Traceback" not in out.stderr
