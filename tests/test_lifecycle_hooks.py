"""Hooks in front of a memory side that hangs for real: bounded threads, bounded queue, counted drops,
and a process that still exits at the end of its main.

The hung memory object blocks each call on a ``threading.Event`` that nobody sets (the tests
set it in their teardown so the blocked threads can end).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core_hooks import AsyncMemoryHooks, MemoryHooks
from core_hooks._pool import STUCK, Admission, admit
from core_hooks.reference import Observation, ReferenceCore

WORKERS, QUEUE_LIMIT, CALLS = 4, 8, 200


class HungMemory:
    """Every call blocks until ``release`` is set; counts how many calls reached it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()

    def _hang(self) -> None:
        with self._lock:
            self.entered += 1
        self.release.wait()

    def append_event(self, *a: Any, **k: Any) -> None:
        self._hang()

    def append_turn(self, *a: Any, **k: Any) -> None:
        self._hang()

    def finish_turn(self, *a: Any, **k: Any) -> None:
        self._hang()

    def close(self, *a: Any, **k: Any) -> bool:
        self._hang()
        return True

    def get_system_prompt(self) -> None:
        self._hang()

    def get_user_profile(self, *a: Any) -> None:
        self._hang()

    def recall(self, *a: Any, **k: Any) -> list[Any]:
        self._hang()
        return []

    def search_knowledge(self, *a: Any) -> list[Any]:
        self._hang()
        return []


@pytest.fixture
def hung() -> Iterator[HungMemory]:
    mem = HungMemory()
    yield mem
    mem.release.set()


def accounted(s: dict[str, Any]) -> bool:
    return s["submitted"] == (s["completed"] + s["failed"] + s["abandoned"] + sum(s["dropped"].values())
                              + s["queued"] + s["running"])


def hook_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Hook workers started since ``before`` (other tests' hung daemon workers live on)."""
    return [t for t in threading.enumerate() if t.name.startswith("memory-hook") and t.is_alive()
            and t not in before]


def obs(i: int) -> dict[str, Any]:
    return {"session_key": f"s{i % 5}", "text": f"message {i}", "type": "message"}


def run_bounded(fn: Any, limit: float = 120) -> None:
    """Run ``fn`` on a thread; fail (instead of hanging the suite) if it does not finish."""
    errors: list[BaseException] = []

    def main() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    t = threading.Thread(target=main, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), "the calls did not all return"
    if errors:
        raise errors[0]


def test_sync_hooks_with_hung_memory_stay_bounded_and_count_drops(hung: HungMemory,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    before = set(threading.enumerate())
    hooks = MemoryHooks(hung, timeout=0.05, workers=WORKERS, queue_limit=QUEUE_LIMIT, warn_interval=3600)
    seen: list[dict[str, Any]] = []

    def calls() -> None:
        for i in range(CALLS):
            assert hooks.after_gate(obs(i), "deliver") is None  # total: never raises, returns nothing
            seen.append(hooks.stats())

    with caplog.at_level(logging.WARNING, logger="core_hooks"):
        run_bounded(calls)
    s = hooks.stats()
    assert max(x["queued"] for x in seen) <= QUEUE_LIMIT
    assert all(x["running"] <= WORKERS for x in seen) and all(accounted(x) for x in seen)
    assert len(hook_threads(before)) <= WORKERS
    assert s["submitted"] == CALLS and s["completed"] == 0 and s["running"] == WORKERS
    assert sum(s["dropped"].values()) >= CALLS - WORKERS - QUEUE_LIMIT  # refused at once, counted
    assert s["dropped"].get("stuck", 0) > 0 and s["timed_out"] >= WORKERS
    assert hung.entered == WORKERS  # nothing else reached the hung side: no late pile-up
    assert "dropped: every memory worker is stuck" in caplog.text
    hooks.shutdown(timeout=0.1)  # bounded even with close() hung too
    assert hooks.stats()["closed"] and hooks.after_gate(obs(0), "deliver") is None
    assert hooks.stats()["dropped"]["closed"] == 1


def test_async_hooks_with_hung_memory_stay_bounded_and_never_block_the_loop(hung: HungMemory) -> None:
    async def main() -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
        hooks = AsyncMemoryHooks(hung, timeout=0.05, workers=WORKERS, queue_limit=QUEUE_LIMIT)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        t = asyncio.create_task(ticker())
        seen = []
        # Concurrent callers, as per-session workers of a core would be.
        for start in range(0, CALLS, 20):
            await asyncio.gather(*(hooks.a_after_gate(obs(i), "deliver") for i in range(start, start + 20)))
            seen.append(hooks.stats())
        await hooks.a_shutdown(timeout=0.1)
        t.cancel()
        return seen, ticks, hooks.stats()

    seen: list[Any] = []
    result: list[Any] = []
    run_bounded(lambda: result.append(asyncio.run(main())))
    seen, ticks, s = result[0]
    assert ticks > 0  # the loop kept running
    assert max(x["queued"] for x in seen) <= QUEUE_LIMIT and all(accounted(x) for x in seen)
    assert s["submitted"] == CALLS and s["completed"] == 0 and s["running"] <= WORKERS
    assert sum(s["dropped"].values()) + s["abandoned"] >= CALLS - WORKERS - QUEUE_LIMIT
    assert hung.entered <= WORKERS + 1  # + close(), run on its own thread


def test_pool_recovers_when_memory_answers_again(hung: HungMemory) -> None:
    before = set(threading.enumerate())
    hooks = MemoryHooks(hung, timeout=0.05, workers=2, queue_limit=2)
    for i in range(10):
        hooks.after_gate(obs(i), "deliver")
    assert hooks.stats()["dropped"].get("stuck", 0) > 0
    hung.release.set()  # the stuck calls return; the same workers take new calls

    class Answering:
        def append_event(self, *a: Any, **k: Any) -> dict[str, str]:
            return {"event_id": "e1"}

    hooks.memory = Answering()
    assert run_until(lambda: hooks.after_gate(obs(1), "deliver") == "e1")
    assert len(hook_threads(before)) <= 2


def run_until(cond: Any, tries: int = 200) -> bool:
    import time

    for _ in range(tries):
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_admission_rules() -> None:
    base = dict(closed=False, workers=2, queue_limit=3, stuck_after=1.0)
    assert admit(free=1, busy_ages=[5.0], queued=0, **base) == Admission(True)  # a free worker takes it
    assert admit(free=1, busy_ages=[5.0], queued=1, **base) == Admission(True)  # queued < limit, one not stuck...
    assert admit(free=0, busy_ages=[5.0, 0.1], queued=2, **base) == Admission(True)  # ...may free up soon
    assert admit(free=0, busy_ages=[5.0, 0.1], queued=3, **base) == Admission(False, "queue_full")
    assert admit(free=0, busy_ages=[5.0, 1.0], queued=0, **base) == Admission(False, STUCK)
    assert admit(free=2, busy_ages=[], queued=0, **{**base, "closed": True}) == Admission(False, "closed")


def test_reference_core_agent_reads_are_bounded_too(hung: HungMemory) -> None:
    async def main() -> list[str]:
        core = ReferenceCore(hung, hook_timeout=0.05)
        for i in range(6):
            await core.submit(Observation(f"s{i % 2}", "who are you" if i == 0 else "tell me about espresso beans",
                                          user_id="ann"))
        await core.drain()
        await core.hooks.a_shutdown(timeout=0.1)
        return [o.text for o in core.outputs]

    out: list[list[str]] = []
    run_bounded(lambda: out.append(asyncio.run(main())))
    assert len(out[0]) == 6  # every message answered although memory (hooks and the agent's reads) hangs


SCRIPT = """
import asyncio, threading
from core_hooks import AsyncMemoryHooks, MemoryHooks

class Hung:
    def __getattr__(self, name):
        def hang(*a, **k):
            threading.Event().wait()  # never set
        return hang

hooks = MemoryHooks(Hung(), timeout=0.05)
for i in range(20):
    hooks.after_gate({"session_key": "s", "text": str(i)}, "deliver")

async def main():
    ahooks = AsyncMemoryHooks(Hung(), timeout=0.05)
    for i in range(20):
        await ahooks.a_after_gate({"session_key": "s", "text": str(i)}, "deliver")
    if SHUTDOWN:
        await ahooks.a_shutdown(timeout=0.1)

asyncio.run(main())
if SHUTDOWN:
    hooks.shutdown(timeout=0.1)
print("main done", flush=True)
"""


@pytest.mark.parametrize("shutdown", [False, True], ids=["no-shutdown", "with-shutdown"])
def test_process_with_hung_memory_exits_at_the_end_of_main(shutdown: bool) -> None:
    script = f"SHUTDOWN = {shutdown}\n" + textwrap.dedent(SCRIPT)
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit after its main ended (stdout {exc.stdout!r})")
    assert out.returncode == 0, out.stderr
    assert "main done" in out.stdout


def test_hooks_keep_working_in_a_forked_child(tmp_path: Path) -> None:
    """The hooks' workers do not survive fork(): a child must start its own, not queue forever."""
    script = r"""
import os, sys, json
from core_hooks import MemoryHooks

class Memory:
    def append_event(self, obs, session, gate_result=None, meta=None):
        return {"event_id": "e-%d" % os.getpid()}

hooks = MemoryHooks(Memory(), timeout=2.0)
assert hooks.after_gate({"session_key": "s"}, "deliver")  # the parent's workers exist now
pid = os.fork()
if pid == 0:
    got = hooks.after_gate({"session_key": "s"}, "deliver")
    os._exit(0 if got == "e-%d" % os.getpid() else 3)
_, status = os.waitpid(pid, 0)
print(json.dumps({"child": os.waitstatus_to_exitcode(status)}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"child": 0}
