"""Vault layout and key validation: which file a key names, and which keys are refused.

::

    <root>/md/system.md               config "system"          (get_system_prompt)
    <root>/md/users/<user_id>.md      config "users/<user_id>" (get_user_profile)
    <root>/md/<name>.md               config "<name>"          (get_config; may contain "/")
    <root>/knowledge/<category>/…/<name>.md   knowledge "<category>/…/<name>"
    <root>/metadata.json              digest and sync state of every file (a cache)

A key is refused with :class:`~memory.InvalidKeyError` — before anything is written — if it
is empty, absolute, contains a NUL or other control character, a backslash, an empty, ``.``
or ``..`` component or a hidden (dot) component, or if the resolved path leaves the vault (for
example through a symlinked folder that points outside).
"""

from __future__ import annotations

import re
from pathlib import Path

from .._errors import InvalidKeyError

CONFIG_DIR = "md"
KNOWLEDGE_DIR = "knowledge"
METADATA_FILE = "metadata.json"
SUFFIX = ".md"
CONFLICT_MARK = ".conflict-"

# Editors' and tools' temporary files, which are never notes (see README "Vault").
_TEMP = re.compile(
    r"(^\.)|(^#.*#$)|(~$)|(\.sw[a-p]$)|(^4913$)|(___jb_(tmp|old)___$)|(\.tmp$)|(\.bak$)|(\.orig$)|(\.crdownload$)"
    r"|(\.part$)|(\.kate-swp$)|(^\.#)|(\.conflict-)"
)


def is_ignored_name(name: str) -> bool:
    return bool(_TEMP.search(name))


def is_note_path(rel: str) -> bool:
    """True for a relative POSIX path that the vault treats as a note (config or knowledge)."""
    parts = rel.split("/")
    if len(parts) < 2 or parts[0] not in (CONFIG_DIR, KNOWLEDGE_DIR):
        return False
    if parts[0] == KNOWLEDGE_DIR and len(parts) < 3:
        return False  # knowledge notes live in a category folder
    if not parts[-1].endswith(SUFFIX) or len(parts[-1]) == len(SUFFIX):
        return False
    return not any(is_ignored_name(p) for p in parts)


def _check(key: object, what: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidKeyError(f"{what} must be a non-empty string, got {key!r}")
    if any(ord(c) < 32 or c == "\x7f" for c in key):
        raise InvalidKeyError(f"{what} {key!r} contains a control character (NUL, newline, ...)")
    if "\\" in key:
        raise InvalidKeyError(f"{what} {key!r} contains a backslash")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKeyError(f"{what} {key!r} is absolute")
    key = key[: -len(SUFFIX)] if key.endswith(SUFFIX) else key
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKeyError(f"{what} {key!r} has an empty, '.' or '..' component")
        if part.startswith(".") or is_ignored_name(part + SUFFIX) or is_ignored_name(part):
            raise InvalidKeyError(f"{what} {key!r} has a hidden or temporary-file component {part!r}")
    return key


def contained(root: Path, path: Path, key: str) -> Path:
    """``path`` if it stays inside ``root`` once symlinks are resolved; else InvalidKeyError."""
    real_root = root.resolve()
    try:
        path.resolve().relative_to(real_root)
    except ValueError:
        raise InvalidKeyError(f"key {key!r} resolves outside the vault ({path.resolve()})") from None
    return path


def config_path(root: Path, key: str) -> tuple[str, Path]:
    key = _check(key, "config key")
    return key, contained(root, root / CONFIG_DIR / (key + SUFFIX), key)


def user_key(user_id: object) -> str:
    uid = _check(user_id if not isinstance(user_id, int) else str(user_id), "user id")
    if "/" in uid:
        raise InvalidKeyError(f"user id {uid!r} may not contain '/'")
    return f"users/{uid}"


def knowledge_path(root: Path, key: str) -> tuple[str, Path]:
    key = _check(key, "knowledge key")
    if "/" not in key:
        raise InvalidKeyError(f"knowledge key {key!r} needs a category, like 'facts/{key}'")
    return key, contained(root, root / KNOWLEDGE_DIR / (key + SUFFIX), key)


def key_of(rel: str) -> tuple[str, str, str]:
    """(kind, key, category) of a note path relative to the root: ``md/users/a.md`` → config."""
    parts = rel[: -len(SUFFIX)].split("/")
    if parts[0] == CONFIG_DIR:
        return "config", "/".join(parts[1:]), ""
    return "knowledge", "/".join(parts[1:]), parts[1]
