"""Vault layout and key validation: which file a key names, and which keys are refused.

::

    <root>/md/system.md               config "system"          (get_system_prompt)
    <root>/md/users/<user_id>.md      config "users/<user_id>" (get_user_profile)
    <root>/md/<name>.md               config "<name>"          (get_config; may contain "/")
    <root>/knowledge/<category>/…/<name>.md   knowledge "<category>/…/<name>"
    <root>/metadata.json              digest and sync state of every file (a cache)

A key is refused with :class:`~memory.InvalidKeyError` — before anything is written — if it
is empty, absolute, contains a NUL or other control character, a backslash, an empty, ``.``
or ``..`` component or a hidden (dot) component, is not valid UTF-8 text, is longer than the
database's key column (255 characters) or has a component longer than a file name may be, or
if the resolved path leaves the vault (for example through a symlinked folder that points
outside). The same rules decide which files the scanner accepts as notes: a file whose key
would be refused is reported and skipped, so every listed note can also be fetched by its key
and every synced row fits its columns on every backend (SQLite does not enforce lengths, MySQL
does — the same vault must behave the same on both).

Symbolic links are never followed below the vault root, wherever they point (inside or
outside): a symlinked note or folder is reported and skipped, and a key whose path crosses one
is refused. Following links that stay inside would give one file two keys and make every
containment check depend on a ``realpath`` that can change between the check and the open.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .._errors import InvalidKeyError

CONFIG_DIR = "md"
KNOWLEDGE_DIR = "knowledge"
METADATA_FILE = "metadata.json"
SUFFIX = ".md"
CONFLICT_MARK = ".conflict-"
MAX_KEY_CHARS = 255  # configs.key / knowledge.key are VARCHAR(255): characters on MySQL
MAX_NAME_BYTES = 255  # NAME_MAX of Linux file systems, for one path component

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


def _show(key: str) -> str:
    """A key for an error message: long ones shortened, so a 10 kB key does not flood the log."""
    return repr(key) if len(key) <= 80 else f"{key[:60]!r}…"


def _check(key: object, what: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidKeyError(f"{what} must be a non-empty string, got {key!r}"[:200])
    if any(ord(c) < 32 or c == "\x7f" for c in key):
        raise InvalidKeyError(f"{what} {_show(key)} contains a control character (NUL, newline, ...)")
    if "\\" in key:
        raise InvalidKeyError(f"{what} {_show(key)} contains a backslash")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKeyError(f"{what} {_show(key)} is absolute")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a file name with bytes that are not UTF-8 (surrogate-escaped)
        raise InvalidKeyError(f"{what} {_show(key)} is not valid UTF-8 text") from None
    key = key[: -len(SUFFIX)] if key.endswith(SUFFIX) else key
    if len(key) > MAX_KEY_CHARS:
        raise InvalidKeyError(f"{what} {_show(key)} is {len(key)} characters long; the database holds keys "
                              f"of at most {MAX_KEY_CHARS}")
    parts = key.split("/")
    for i, part in enumerate(parts):
        if part in ("", ".", ".."):
            raise InvalidKeyError(f"{what} {_show(key)} has an empty, '.' or '..' component")
        if part.startswith(".") or is_ignored_name(part + SUFFIX) or is_ignored_name(part):
            raise InvalidKeyError(f"{what} {_show(key)} has a hidden or temporary-file component {part!r}")
        name = part + SUFFIX if i == len(parts) - 1 else part
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise InvalidKeyError(f"{what} {_show(key)} has a component longer than a file name may be "
                                  f"({MAX_NAME_BYTES} bytes)")
    return key


def scanned_key_problem(rel: str) -> str | None:
    """Why a note file found by the scanner cannot be a note (its key would be refused), or None."""
    kind, key, _ = key_of(rel)
    try:
        _check(key, f"{kind} key")
    except InvalidKeyError as exc:
        return f"skipped: {exc}"
    return None


def contained(root: Path, path: Path, key: str) -> Path:
    """``path`` if no existing component below ``root`` is a symbolic link; else InvalidKeyError.

    Only entries inside the vault are looked at (``lstat``, never following a link), so the
    check itself reads nothing outside. It gives the caller a clear error early; the guarantee
    comes from opening every component with ``O_NOFOLLOW`` (:mod:`._fs`), which also refuses a
    link swapped in after this check.
    """
    rel = path.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            break  # missing (created later, without links) or unreadable: the open decides
        if stat.S_ISLNK(mode):
            raise InvalidKeyError(f"key {_show(key)} passes through a symbolic link ({current.relative_to(root)}); "
                                  "the vault follows no links, as they could lead outside the vault")
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
