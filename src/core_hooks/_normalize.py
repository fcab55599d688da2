"""Reading what a chat core hands us, whatever shape it comes in.

Decisions and observation types may be enums (``.value``), strings or dicts; observations may
be dataclasses, pydantic models, plain objects or dicts. These helpers never raise.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, MutableMapping
from typing import Any


def field(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present on ``obj`` (attribute or mapping key)."""
    for name in names:
        try:
            if isinstance(obj, Mapping):
                if name in obj:
                    return obj[name]
            elif hasattr(obj, name):
                return getattr(obj, name)
        except Exception:  # noqa: BLE001 - a property that raises is simply absent
            continue
    return default


def label(value: Any) -> str:
    """Lower-case name of an enum/str/dict-ish decision or type: ``Decision.DELIVER`` → "deliver"."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        value = field(value, "action", "decision", "type", "value", "name", default="")
    elif not isinstance(value, (str, enum.Enum)) and hasattr(value, "action"):
        value = field(value, "action")
    if isinstance(value, enum.Enum):
        value = value.value if isinstance(value.value, str) else value.name
    try:
        return str(value).strip().lower().rsplit(".", 1)[-1]
    except Exception:  # noqa: BLE001
        return ""


def gate_summary(decision: Any) -> dict[str, Any]:
    """The parts of a gate result worth keeping: action, scene, score, reasons."""
    return {
        "action": label(decision),
        "scene": _plain(field(decision, "scene", default=None)),
        "score": _plain(field(decision, "score", default=None)),
        "reasons": _plain(field(decision, "reasons", "reason", default=None)),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def metadata_of(obj: Any, create: bool = True) -> MutableMapping[str, Any] | None:
    """The observation's metadata dict, creating it (on the object) when missing or None."""
    meta = field(obj, "metadata", default=None)
    if isinstance(meta, MutableMapping):
        return meta
    if not create:
        return None
    fresh: dict[str, Any] = {}
    try:
        if isinstance(obj, MutableMapping):
            obj["metadata"] = fresh
        else:
            if _frozen(obj):
                object.__setattr__(obj, "metadata", fresh)  # a frozen dataclass still gets its dict
            else:
                obj.metadata = fresh
        return fresh
    except Exception:  # noqa: BLE001 - an object that refuses attributes keeps no metadata
        return None


def _frozen(obj: Any) -> bool:
    params = getattr(type(obj), "__dataclass_params__", None)
    return bool(params is not None and params.frozen)
