"""The hooks' rules one by one, against a real service on SQLite, plus a memory side that breaks."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core_hooks import AsyncMemoryHooks, MemoryHooks, auto_init
from core_hooks.reference import Observation, ObsType, ReferenceCore
from memory import DisabledMemoryService, MemoryService

from .conftest import service_config


class Kind(enum.Enum):
    MESSAGE = "message"
    REACTION = "reaction"


class Action(enum.Enum):
    DELIVER = "deliver"
    DROP = "drop"


@dataclasses.dataclass
class Obs:
    session_key: str
    text: str
    type: Kind = Kind.MESSAGE
    metadata: dict[str, Any] | None = None


@dataclasses.dataclass
class Decision:
    action: Action
    scene: str = "chat"
    score: float = 0.9
    reasons: tuple[str, ...] = ("greeting",)


class PydanticLike:
    """What a pydantic model looks like from outside: attributes + model_dump()."""

    def __init__(self, session_key: str, text: str) -> None:
        self.session_key, self.text, self.type, self.metadata = session_key, text, "message", None

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"session_key": self.session_key, "text": self.text, "type": self.type}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[MemoryService]:
    s = MemoryService.from_config(service_config(f"sqlite:///{tmp_path / 'm.db'}", tmp_path), start_vault=False)
    yield s
    s.close()


@pytest.fixture
def hooks(svc: MemoryService) -> Iterator[MemoryHooks]:
    h = MemoryHooks(svc, system_session="sys", timeout=5)
    yield h
    h.shutdown(timeout=5)


def test_event_recorded_and_id_written_back_creating_metadata(hooks: MemoryHooks, svc: MemoryService) -> None:
    obs = Obs("s1", "hello")  # metadata is None
    eid = hooks.after_gate(obs, Decision(Action.DELIVER))
    assert eid and obs.metadata == {"memory_event_id": eid}
    assert svc.flush(10)
    ev = svc.get_event(eid)
    assert ev is not None and ev.session_key == "s1" and ev.obs["text"] == "hello"
    assert ev.gate == {"action": "deliver", "scene": "chat", "score": 0.9, "reasons": ["greeting"]}
    as_dict: dict[str, Any] = {"session_key": "s2", "text": "hi", "type": "message"}
    eid2 = hooks.after_gate(as_dict, {"action": "DELIVER", "score": 1})
    assert as_dict["metadata"] == {"memory_event_id": eid2}
    p = PydanticLike("s3", "yo")
    eid3 = hooks.after_gate(p, "deliver")
    assert p.metadata == {"memory_event_id": eid3}
    assert svc.get_event(eid3).obs == {"session_key": "s3", "text": "yo", "type": "message"}  # type: ignore[union-attr]


def test_system_session_is_skipped(hooks: MemoryHooks, svc: MemoryService) -> None:
    obs = Obs("sys", "maintenance")
    assert hooks.after_gate(obs, Decision(Action.DROP)) is None
    assert obs.metadata is None
    assert svc.health()["queue"]["accepted"] == 0


def test_turn_rules(hooks: MemoryHooks, svc: MemoryService, caplog: pytest.LogCaptureFixture) -> None:
    deliver = Decision(Action.DELIVER)
    msg = Obs("s", "question")
    hooks.after_gate(msg, deliver)
    assert hooks.on_deliver(msg, Decision(Action.DROP)) is None  # not DELIVER
    reaction = Obs("s", "👍", Kind.REACTION)
    hooks.after_gate(reaction, deliver)
    assert hooks.on_deliver(reaction, deliver) is None  # not a MESSAGE
    with caplog.at_level(logging.WARNING, logger="core_hooks"):
        assert hooks.on_deliver(Obs("s", "no event"), deliver) is None  # no memory_event_id
    assert "no turn started" in caplog.text
    turn_id = hooks.on_deliver(msg, "DELIVER")  # a plain string decision works too
    assert turn_id is not None
    assert svc.flush(10)
    turn = svc.get_turn(turn_id)
    assert turn is not None and turn.input_event_id == msg.metadata["memory_event_id"]  # type: ignore[index]
    assert svc.store.count("turns") == 1


@dataclasses.dataclass
class Result:
    text: str
    error: str | None = None


def test_turn_endings_and_output_tags(hooks: MemoryHooks, svc: MemoryService) -> None:
    ids = []
    for _ in range(3):
        obs = Obs("s", "q")
        hooks.after_gate(obs, Decision(Action.DELIVER))
        ids.append(hooks.on_deliver(obs, Decision(Action.DELIVER)))
    out_ok = Obs("s", "answer")
    out_ok.metadata = {"id": "x"}
    hooks.after_agent(ids[0], result=Result("answer"), outputs=[out_ok])
    hooks.after_agent(ids[1], result=Result("sorry", error="model overloaded"))
    hooks.on_agent_error(ids[2], ValueError("kaput"))
    assert out_ok.metadata == {"id": "x", "memory_turn_id": ids[0]}
    assert svc.flush(10)
    t0, t1, t2 = (svc.get_turn(i) for i in ids)  # type: ignore[arg-type]
    assert (t0.status, t0.error) == ("ok", None)  # type: ignore[union-attr]
    assert (t1.status, t1.error) == ("error", "model overloaded")  # type: ignore[union-attr]
    assert (t2.status, t2.error) == ("error", "ValueError: kaput")  # type: ignore[union-attr]


class Raising:
    def __getattr__(self, name: str) -> Callable[..., Any]:
        def boom(*a: Any, **k: Any) -> Any:
            raise RuntimeError(f"memory broke in {name}")
        return boom


class Hanging:
    def __getattr__(self, name: str) -> Callable[..., Any]:
        def hang(*a: Any, **k: Any) -> Any:
            time.sleep(30)
        return hang


def conversation() -> list[Observation]:
    out = []
    for i in range(12):
        text = "[fail] now" if i == 5 else ("" if i == 7 else f"tell me about coffee {i}")
        out.append(Observation(f"s{i % 3}", text, ObsType.REACTION if i == 9 else ObsType.MESSAGE, user_id="alice"))
    out.append(Observation("system", "tick", ObsType.SYSTEM))
    return out


async def run_core(memory: Any, timeout: float = 0.2) -> list[tuple[str, str]]:
    core = ReferenceCore(memory, hook_timeout=timeout)
    core.agent.memory = None  # the agent's answers must not depend on the memory under test
    for obs in conversation():
        await core.submit(obs)
    await core.drain()
    core.hooks._pool.shutdown()
    return sorted((o.session_key, o.text) for o in core.outputs)


def test_broken_memory_never_changes_the_core(svc: MemoryService) -> None:
    baseline = asyncio.run(run_core(None))
    assert len(baseline) == 10  # 12 inputs, minus the empty one and the reaction
    assert asyncio.run(run_core(svc, timeout=5)) == baseline
    assert asyncio.run(run_core(Raising())) == baseline
    assert asyncio.run(run_core(Hanging(), timeout=0.2)) == baseline


def test_hanging_memory_never_blocks_the_event_loop() -> None:
    async def main() -> int:
        hooks = AsyncMemoryHooks(Hanging(), timeout=0.3)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        assert await hooks.a_after_gate(Obs("s", "x"), "deliver") is None
        t.cancel()
        hooks._pool.shutdown()
        return ticks

    assert asyncio.run(main()) > 5  # the loop kept running while memory hung


def test_twenty_sessions_in_parallel_all_accounted_for(svc: MemoryService) -> None:
    async def main() -> ReferenceCore:
        core = ReferenceCore(svc, hook_timeout=10)
        for i in range(20 * 15):
            await core.submit(Observation(f"session-{i % 20}", f"message {i} about espresso", user_id="bob"))
        await core.drain()
        return core

    core = asyncio.run(main())
    assert svc.flush(30)
    assert len(core.processed) == 300
    event_ids = [o.metadata["memory_event_id"] for o, _, _ in core.processed]  # type: ignore[index]
    turn_ids = [t for _, _, t in core.processed]
    assert len(set(event_ids)) == 300 and all(turn_ids) and len(set(turn_ids)) == 300
    assert svc.store.existing_ids("events", event_ids) == set(event_ids)
    assert svc.store.existing_ids("turns", turn_ids) == set(turn_ids)  # type: ignore[arg-type]
    rows = svc.store.execute("SELECT COUNT(*) FROM turns WHERE status = 'ok' AND finished_at IS NOT NULL")
    assert rows[0][0] == 300
    for i in range(20):
        assert len(svc.get_recent_events(f"session-{i}", 100)) == 15


def test_kill_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMORY_ENABLED", "0")
    mem = MemoryService.from_config(service_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path))
    assert isinstance(mem, DisabledMemoryService)
    hooks = MemoryHooks(mem)
    obs = Obs("s", "hi")
    eid = hooks.after_gate(obs, "deliver")
    assert eid and obs.metadata == {"memory_event_id": eid}
    assert hooks.on_deliver(obs, "deliver")
    assert mem.health()["status"] == "disabled"
    assert mem.get_recent_events("s", 5) == [] and mem.get_event(eid) is None
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "queue").exists()  # no I/O at all
    hooks.shutdown()


def test_auto_init(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMORY_DATABASE_DSN", raising=False)
    assert auto_init(enable_memory=False) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("failure_queue:\n  max_retries: abc\n")
    with caplog.at_level(logging.ERROR, logger="core_hooks"):
        assert auto_init(memory_config_path=bad) is None
        assert auto_init(memory_config_path=bad) is None
    assert caplog.text.count("max_retries: expected an integer >= 1, got 'abc'") == 1  # logged once
    down = tmp_path / "down.yaml"
    down.write_text(f"database:\n  dsn: mysql+pymysql://root@127.0.0.1:1/x\n  connect_timeout: 1\n"
                    f"failure_queue:\n  path: {tmp_path / 'q'}\nvault:\n  root_path: {tmp_path / 'v'}\n"
                    f"  watch: false\n")
    mem = auto_init(memory_config_path=down, timeout=5)
    assert isinstance(mem, MemoryService)  # degraded but working, not "memory off"
    rec = mem.append_event({"x": 1}, "s")
    assert mem.get_event(rec.event_id) is not None
    assert mem.health()["status"] == "degraded"
    mem.close(timeout=0.2)


# -- the reference agent answers from recall ------------------------------------------------------------
class RecallSpy:
    """The real service, with every ``recall`` call's arguments written down."""

    def __init__(self, svc: MemoryService, *, ignore_session: bool = False) -> None:
        self.svc, self.ignore_session = svc, ignore_session
        self.calls: list[dict[str, Any]] = []

    def recall(self, query: Any, k: Any = None, **kw: Any) -> Any:
        self.calls.append({"query": query, "k": k, **kw})
        if self.ignore_session:  # a memory side that forgets the scope: the agent must still not leak
            kw.pop("session_key", None)
        return self.svc.recall(query, k, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.svc, name)


def converse(memory: Any, lines: list[tuple[str, str]], timeout: float = 5.0) -> list[tuple[Observation, Any]]:
    """Send each line and wait for its answer before the next (so earlier ones are there to recall)."""
    async def main() -> list[tuple[Observation, Any]]:
        core = ReferenceCore(memory, hook_timeout=timeout)
        for session, text in lines:
            await core.submit(Observation(session, text, user_id=session))
            await core.drain()
        core.hooks._pool.shutdown()
        return core.answers

    return asyncio.run(main())


SECRET = "my locker code is zebra 4711"


@pytest.mark.parametrize("ignore_session", [False, True], ids=["scoped", "memory-ignores-scope"])
def test_agent_recalls_its_own_session_only(svc: MemoryService, ignore_session: bool) -> None:
    svc.initialize()  # the note goes to the database at once (the vault writes its file either way)
    svc.upsert_knowledge("facts/lockers", "# Lockers\n\nThe zebra lockers are by the door; codes are personal.")
    spy = RecallSpy(svc, ignore_session=ignore_session)
    answers = converse(spy, [("alice", SECRET), ("bob", "what is the zebra locker code?"),
                             ("alice", "zebra locker code?"), ("bob", "zebra locker code?")])
    (_, a1), (bob_q, b1), (alice_q, a2), (bob_q2, b2) = answers
    assert "From 'Lockers': The zebra lockers are by the door" in b1.text  # the shared note is for everyone
    assert "4711" not in b1.text and "4711" not in b2.text, (b1.text, b2.text)
    assert b1.recalled.earlier is None  # bob has said nothing before
    assert b2.recalled.earlier.session_key == "bob"  # his own first question, never alice's words
    assert f'Earlier you said: "{bob_q.text}"' in b2.text
    # alice gets her own earlier message back, and not the message she is asking with
    assert f'Earlier you said: "{SECRET}"' in a2.text
    assert a2.recalled.earlier.session_key == "alice"
    assert a2.recalled.earlier.id != alice_q.metadata["memory_event_id"]  # type: ignore[index]
    assert svc.get_event(a2.recalled.earlier.id).obs["text"] == SECRET  # type: ignore[union-attr]
    assert f"event:{a2.recalled.earlier.id}" in a2.sources and "facts/lockers" in a2.sources
    # every recall was asked once per message, for the asking session only
    assert [(c["query"], c["session_key"]) for c in spy.calls] == [
        (o.text, o.session_key) for o in (answers[0][0], bob_q, alice_q, bob_q2)]
    if ignore_session:  # the unscoped search really did return alice's message to bob's question
        assert any(h.session_key == "alice" for h in svc.recall("zebra locker code?", 8))


class RecallBroken:
    """A working memory whose ``recall`` misbehaves in one way."""

    def __init__(self, svc: MemoryService, how: str) -> None:
        self.svc, self.how = svc, how

    def recall(self, *a: Any, **k: Any) -> Any:
        if self.how == "raises":
            raise RuntimeError("recall broke")
        if self.how == "hangs":
            time.sleep(30)
        if self.how == "junk":
            return [object(), None, "hit", 42]
        if self.how == "not-a-list":
            return "zebra"
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.svc, name)


@pytest.mark.parametrize("how", ["empty", "raises", "hangs", "junk", "not-a-list"])
def test_agent_answers_when_recall_fails(svc: MemoryService, how: str) -> None:
    svc.initialize()
    svc.upsert_knowledge("facts/lockers", "# Lockers\n\nThe zebra lockers are by the door.")
    t0 = time.monotonic()
    answers = converse(RecallBroken(svc, how), [("alice", SECRET), ("alice", "zebra locker code?")], timeout=0.5)
    assert time.monotonic() - t0 < 10  # a hanging recall is abandoned at the hook timeout
    assert [r.text for _, r in answers] == ["I don't have a note about that yet."] * 2
    assert all(r.error is None and r.sources == () for _, r in answers)
    assert svc.flush(10)
    assert len(svc.get_recent_events("alice", 10)) == 2  # the rest of memory still recorded everything


def test_agent_answers_from_recall_on_the_disabled_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMORY_ENABLED", "0")
    mem = MemoryService.from_config(service_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path))
    answers = converse(mem, [("alice", SECRET), ("alice", "zebra locker code?")])
    assert [r.text for _, r in answers] == ["I don't have a note about that yet."] * 2
