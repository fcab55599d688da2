"""One explicit surface: MemoryService and the kill switch's DisabledMemoryService implement MemoryAPI.

Checked by introspection, so a public method added to MemoryService without adding it to the
protocol and to the disabled service fails here (``test_the_check_itself_catches_a_new_method``
shows the check bites).
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any

import pytest

import memory
from memory import DisabledMemoryService, MemoryAPI, MemoryService, SyncReport

from .conftest import service_config

# Construction is not part of the instance surface a core relies on (see memory/_protocol.py).
NOT_IN_PROTOCOL = {"from_config"}


def public_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items()
            if not name.startswith("_") and isinstance(value, (types.FunctionType, classmethod, staticmethod))}


def protocol_methods() -> set[str]:
    return {name for name, value in vars(MemoryAPI).items()
            if isinstance(value, types.FunctionType)
            and (not name.startswith("_") or name in ("__enter__", "__exit__"))}


def _members(t: Any) -> set[Any]:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return set(typing.get_args(t))
    return {t}


def _hints(fn: Any) -> dict[str, Any]:
    return typing.get_type_hints(fn)


def mismatches(cls: type) -> list[str]:
    """Why ``cls`` does not implement MemoryAPI explicitly and compatibly (empty list: it does)."""
    problems = []
    for name in sorted(protocol_methods()):
        try:
            impl = inspect.getattr_static(cls, name)  # static: a __getattr__ catch-all does not count
        except AttributeError:
            problems.append(f"{cls.__name__}.{name}: missing")
            continue
        if not isinstance(impl, types.FunctionType) or impl is vars(MemoryAPI).get(name):
            problems.append(f"{cls.__name__}.{name}: not an explicit method of its own")
            continue
        proto = vars(MemoryAPI)[name]
        want = list(inspect.signature(proto).parameters.values())[1:]
        have = list(inspect.signature(impl).parameters.values())[1:]
        ph, ih = _hints(proto), _hints(impl)
        for i, p in enumerate(want):
            if i >= len(have):
                problems.append(f"{cls.__name__}.{name}: parameter {p.name!r} missing")
                break
            q = have[i]
            if (q.name, q.kind) != (p.name, p.kind):
                problems.append(f"{cls.__name__}.{name}: parameter {i} is {q.kind.description} {q.name!r}, "
                                f"expected {p.kind.description} {p.name!r}")
            elif q.default != p.default:
                problems.append(f"{cls.__name__}.{name}: {p.name} defaults to {q.default!r}, expected {p.default!r}")
            elif p.name in ph and ih.get(p.name, Any) is not Any and not _members(ph[p.name]) <= _members(ih[p.name]):
                problems.append(f"{cls.__name__}.{name}: {p.name} accepts {ih[p.name]}, protocol passes {ph[p.name]}")
        for q in have[len(want):]:  # extra parameters must be optional, or a call by the protocol breaks
            if q.default is inspect.Parameter.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD):
                problems.append(f"{cls.__name__}.{name}: extra required parameter {q.name!r}")
        if "return" in ph and name != "__enter__":
            ret = ih.get("return", Any)
            if ret is Any or not _members(ret) <= _members(ph["return"]):
                problems.append(f"{cls.__name__}.{name}: returns {ret}, protocol promises {ph['return']}")
    return problems


def test_every_public_method_of_the_service_is_in_the_protocol() -> None:
    missing = public_methods(MemoryService) - NOT_IN_PROTOCOL - protocol_methods()
    assert not missing, f"public MemoryService methods missing from MemoryAPI: {sorted(missing)}"
    extra = protocol_methods() - public_methods(MemoryService) - {"__enter__", "__exit__"}
    assert not extra, f"MemoryAPI lists methods MemoryService does not have: {sorted(extra)}"


@pytest.mark.parametrize("cls", [MemoryService, DisabledMemoryService], ids=lambda c: c.__name__)
def test_both_services_implement_every_protocol_method_compatibly(cls: type) -> None:
    assert mismatches(cls) == []


def test_no_catch_all_on_the_disabled_service() -> None:
    assert "__getattr__" not in vars(DisabledMemoryService)
    with pytest.raises(AttributeError):
        DisabledMemoryService().no_such_method  # noqa: B018 - a typo must fail, not be swallowed


def test_the_check_itself_catches_a_new_method() -> None:
    class Grown(MemoryService):
        def remember_more(self, query: str, limit: int = 5) -> list[Any]:
            return []

        def flush(self, timeout: float | None = 10.0, strict: bool = False) -> bool:  # extra optional: fine
            return True

    assert "remember_more" in public_methods(Grown) - protocol_methods()

    class Drifted(DisabledMemoryService):
        def get_recent_events(self, session: Any, limit: int = 50) -> list[Any]:  # type: ignore[override]
            return []

        def delete_knowledge(self, key: str, hard: bool) -> bool:  # type: ignore[override]
            return False

    found = mismatches(Drifted)
    assert any("get_recent_events: parameter 0" in p for p in found)
    assert any("get_recent_events: limit defaults to 50" in p for p in found)
    assert any("delete_knowledge: extra required parameter 'hard'" in p for p in found)
    assert any("get_recent_events: returns" in p for p in found)  # list[Any] is not list[EventRecord]


def test_runtime_checkable_and_exported(tmp_path: Path) -> None:
    assert memory.MemoryAPI is MemoryAPI and "MemoryAPI" in memory.__all__
    off = DisabledMemoryService()
    assert isinstance(off, MemoryAPI)
    svc = MemoryService.from_config(service_config(f"sqlite:///{tmp_path / 'm.db'}", tmp_path), start_vault=False)
    try:
        assert isinstance(svc, MemoryAPI)
    finally:
        svc.close()
    assert not isinstance(object(), MemoryAPI)


def test_disabled_service_answers_every_call_without_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with DisabledMemoryService() as off:
        ev = off.append_event({"t": "hi"}, "s")
        turn = off.append_turn("s", ev.event_id)
        assert ev.event_id and turn.turn_id and ev.event_id != turn.turn_id
        assert off.finish_turn(turn.turn_id) is None
        assert off.get_event(ev.event_id) is None and off.get_turn(turn.turn_id) is None
        assert off.get_recent_events("s") == [] and off.get_recent_turns("s", 3) == []
        assert off.get_system_prompt() is None and off.get_user_profile("u") is None
        assert off.get_config("system") is None and off.get_knowledge("facts/x") is None
        assert off.list_knowledge() == [] and off.list_knowledge("facts") == []
        assert off.search_knowledge("coffee") == []
        # Vault writes: None means "nothing was written" (documented in memory/_protocol.py).
        assert off.upsert_system_prompt("be nice") is None
        assert off.upsert_user_profile("u", "likes tea", {"x": 1}) is None
        assert off.upsert_config("style", "short") is None
        assert off.upsert_knowledge("facts/coffee", "# Coffee\n") is None
        assert off.delete_knowledge("facts/coffee") is False
        report = off.vault_sync()
        assert isinstance(report, SyncReport) and report.database_ok is False and report.new == 0
        check = off.vault_check()
        assert check["disabled"] is True and check["ok"] is False and check["conflicts"] == []
        assert off.initialize() is None
        assert off.flush() is True and off.flush(0.1) is True and off.check() == []
        assert off.health()["status"] == "disabled"
    assert off.close() is True
    assert list(tmp_path.iterdir()) == []  # nothing touched the disk
