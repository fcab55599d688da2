"""SQLite state a forked child inherits: released before the child's first connection, or refused.

SQLite keeps one record per database file and process (its open files, its locks, the mapping
of the ``-shm`` index). A child's new connection reuses that record if it is still open, and
then holds none of the kernel locks SQLite thinks it holds: once the parent exits, another
process may reset the WAL index under the child (lost commits, or SIGBUS on the mapping). The
record stays open as long as any inherited connection is open, including one that was closed
while a statement was still alive (SQLite keeps such a connection until the statement is freed).

Each case runs in a real subprocess that forks (a crash must fail the test, not pytest) and
reports, from the child, which of the database's files it still has open and what a new store
on the same file does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if not Path("/proc/self/fd").is_dir():  # pragma: no cover - the check reads the process's open files
    pytest.skip("needs /proc/self/fd", allow_module_level=True)

SCRIPT = textwrap.dedent(r'''
    import gc, json, os, sys, threading, time
    from memory._config import load_config
    from memory.store import create_store

    path, case = sys.argv[1], sys.argv[2]
    real = os.path.realpath(path)

    def db_files():
        out = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target in (real, real + "-wal", real + "-shm"):
                out.append(os.path.basename(target))
        return sorted(out)

    def holds_own_shm_lock():
        """Whether this process holds a kernel lock on the -shm file (SQLite's "I use this
        index" lock): a connection built on inherited state believes it does and holds none."""
        ino = os.stat(real + "-shm").st_ino
        with open("/proc/locks") as fh:
            for line in fh:
                f = line.split()
                if f[1] == "POSIX" and f[4] == str(os.getpid()) and f[5].rsplit(":", 1)[-1] == str(ino):
                    return True
        return False

    def new_store():
        return create_store(load_config({"database": {"dsn": f"sqlite:///{path}"}}).database)

    store = new_store()
    store.initialize()
    gc.disable()  # what keeps a statement alive must not depend on when the collector runs
    keep = []

    if case == "failed-write":
        # A write that fails after a statement ran (a real constraint error), its exception kept
        # (logs, health and retries keep the last error; its traceback holds the cursor).
        try:
            with store._raw_write() as cur:
                cur.execute("INSERT INTO recall_state (name, value) VALUES ('version', 0)")
        except Exception as exc:
            keep.append(exc)
    elif case in ("garbage", "stuck"):
        # A connection closed while a statement of it is alive: garbage in a reference cycle
        # (collectable), or held by a thread that will not exist in the child (never freed).
        conn = store.engine.raw_connection()
        cur = conn.driver_connection.cursor()
        cur.execute("SELECT name FROM sqlite_master")  # several rows: the statement stays active
        cur.fetchone()
        conn.invalidate()
        if case == "garbage":
            class Box:
                pass
            box = Box()
            box.me, box.cur = box, cur
            del box, cur
        else:
            ready = threading.Event()

            def hold(c=cur):
                ready.set()
                time.sleep(3600)

            threading.Thread(target=hold, daemon=True).start()
            ready.wait()
            del cur
        conn.close()
    if case != "failed-write":
        assert db_files(), "the set-up must leave the parent with the database open"

    store.before_fork()
    pid = os.fork()
    if pid == 0:
        store.after_fork_in_child()
        report = {"after_hooks": db_files()}
        child = new_store()
        try:
            child.initialize()
            report["new_store"] = "ok"
            report["count"] = child.count("events")
            report["own_lock"] = holds_own_shm_lock()  # while its pooled connection is open
        except Exception as exc:
            report["new_store"] = f"{type(exc).__name__}: {exc}"
        child.dispose()
        report["after_dispose"] = db_files()
        print(json.dumps(report), flush=True)
        os._exit(0)
    store.after_fork_in_parent()
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status}), flush=True)
''')


def run_case(tmp_path: Path, case: str) -> tuple[dict[str, object], int]:
    script = tmp_path / "forkstate.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "m.db"), case],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    child = next(x for x in lines if "after_hooks" in x)
    status = next(x for x in lines if "status" in x)["status"]
    return child, status


def test_a_failed_write_leaves_nothing_open_for_a_child(tmp_path: Path) -> None:
    # Regression: the failed write closed its connection before its cursor, so the connection
    # stayed open inside SQLite while the kept exception lived; forked children inherited it
    # and died of SIGBUS in the chaos run once their parent had been killed.
    child, status = run_case(tmp_path, "failed-write")
    assert status == 0
    assert child["after_hooks"] == [], child
    assert child["new_store"] == "ok" and child["count"] == 0 and child["own_lock"], child
    assert child["after_dispose"] == [], child


def test_inherited_garbage_is_collected_before_the_first_connection(tmp_path: Path) -> None:
    child, status = run_case(tmp_path, "garbage")
    assert status == 0
    assert child["after_hooks"] != [], child  # the hooks alone cannot free it: gc is disabled
    assert child["new_store"] == "ok", child  # ... the first connection collects it, then connects
    assert child["own_lock"], child  # on state of its own
    assert child["after_dispose"] == [], child  # and nothing of the parent's was left behind


def test_a_child_refuses_sqlite_it_cannot_use_safely(tmp_path: Path) -> None:
    child, status = run_case(tmp_path, "stuck")
    assert status == 0
    assert child["after_hooks"] != [], child
    # Refused with a reason, never a connection on state the child does not own.
    assert child["new_store"].startswith("StoreUnavailable"), child
    assert "forked" in str(child["new_store"]) and "journal" in str(child["new_store"]), child
