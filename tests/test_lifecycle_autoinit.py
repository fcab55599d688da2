"""auto_init at the edges: a construction that outlives its timeout, and one that never ends.

The slow construction is real: the config file is a named pipe (a legitimate config source,
e.g. ``--config <(...)``), so ``MemoryService.from_config`` blocks in the kernel reading it until
the test writes the config into the pipe — after ``auto_init`` has already given up. From then
on the constructor builds a complete service (slot claimed with flock, writer and vault threads,
an atexit hook); all of it must be closed as soon as it exists.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core_hooks import auto_init
from memory import MemoryService
from memory._service import _close_at_exit

from .conftest import wait_for


def config_text(root: Path) -> str:
    return (f"database:\n  dsn: sqlite:///{root / 'm.db'}\n"
            f"failure_queue:\n  path: {root / 'queue'}\n"
            f"vault:\n  root_path: {root / 'vault'}\n  watch: true\n")


def feed(fifo: Path, text: str) -> bool:
    """Write ``text`` into the pipe once a reader has opened it (True when written)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return False
        raise
    try:
        os.set_blocking(fd, True)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return True


def slot_is_free(lock_file: Path) -> bool:
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops our flock again


def new_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    # watchdog keeps one inotify reader per process, shared by every observer (InotifyFD.get_instance):
    # it belongs to the library, not to any service, and lives as long as the process.
    return {t for t in set(threading.enumerate()) - before if type(t).__name__ != "InotifyFD"}


def exit_hooks() -> list[functools.partial[None]]:
    """Every live exit hook a MemoryService registered (the atexit module keeps registered ones alive)."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, functools.partial) and o.func is _close_at_exit]


@pytest.fixture
def leftovers() -> Iterator[None]:
    """Close any service this test leaked (only the pre-fix code leaks), so others are unaffected."""
    yield
    for obj in gc.get_objects():
        if isinstance(obj, MemoryService) and not obj._closed:
            with contextlib.suppress(Exception):
                obj.close(timeout=0.5)


def test_service_built_after_the_timeout_is_closed_as_soon_as_it_exists(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, leftovers: None) -> None:
    monkeypatch.delenv("MEMORY_DATABASE_DSN", raising=False)
    monkeypatch.delenv("MEMORY_ENABLED", raising=False)
    fifo = tmp_path / "memory.yaml"
    os.mkfifo(fifo)
    threads_before = set(threading.enumerate())
    hooks_before = exit_hooks()  # other tests' services may still have theirs
    with caplog.at_level(logging.INFO, logger="core_hooks"):
        assert auto_init(memory_config_path=fifo, timeout=0.3) is None  # construction is stuck on the pipe
        assert "took longer than 0.3s" in caplog.text
        # Now let the abandoned construction finish: it builds a whole service nobody will use.
        assert wait_for(lambda: feed(fifo, config_text(tmp_path)), 20)
        lock = tmp_path / "queue" / "slot-0" / "lock"
        assert wait_for(lock.exists, 20)  # the late constructor really ran and claimed a slot

        def all_gone() -> bool:
            return not new_threads(threads_before) and slot_is_free(lock)

        assert wait_for(all_gone, 20), (f"left behind: threads {new_threads(threads_before)}, "
                                        f"slot free: {slot_is_free(lock)}")
    assert "closed the memory service that was built after" in caplog.text
    assert not [o for o in gc.get_objects() if isinstance(o, MemoryService) and not o._closed
                and o.config.failure_queue.path.parent == tmp_path]
    # Its exit hook is gone too. A registered hook is kept alive by the atexit module, so any
    # surviving hook for this service (alive, or already collected) would still be found here.
    ours = [h for h in exit_hooks() if h not in hooks_before]
    assert ours == []


def test_a_construction_that_never_ends_does_not_hold_the_interpreter_at_exit(tmp_path: Path) -> None:
    fifo = tmp_path / "memory.yaml"
    os.mkfifo(fifo)  # nobody ever writes it: from_config blocks forever
    script = textwrap.dedent(f"""
        from core_hooks import auto_init
        assert auto_init(memory_config_path={str(fifo)!r}, timeout=0.2) is None
        print("main done", flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("MEMORY_ENABLED", "MEMORY_DATABASE_DSN")}
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(Exception):
            feed(fifo, "")  # unblock the orphan so it can die
        pytest.fail(f"the interpreter did not exit after main: {exc.stdout!r}")
    assert out.returncode == 0, out.stderr
    assert "main done" in out.stdout


@pytest.mark.parametrize("bad", [None, -1, 0, float("nan"), float("inf"), "soon"])
def test_an_unusable_timeout_is_a_clear_error_not_an_unbounded_wait(tmp_path: Path, bad: object,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    fifo = tmp_path / "memory.yaml"
    os.mkfifo(fifo)  # would block any attempt to read the config
    answer: list[object] = []
    t = threading.Thread(target=lambda: answer.append(auto_init(memory_config_path=fifo, timeout=bad)), daemon=True)
    with caplog.at_level(logging.ERROR, logger="core_hooks"):
        t.start()
        t.join(30)
        if t.is_alive():
            feed(fifo, "")  # unblock the reader before failing
            pytest.fail("auto_init waited without bound")
    assert answer == [None]
    assert f"timeout must be a positive number of seconds, got {bad!r}" in caplog.text
    assert not feed(fifo, ""), "the config was read although the call was refused"


def test_a_broken_memory_install_does_not_stop_the_core(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "memory", None)  # what Python does for a package that cannot import
    with caplog.at_level(logging.ERROR, logger="core_hooks"):
        assert auto_init(memory_config_path="config/memory.yaml") is None
    assert "cannot import" in caplog.text
