"""Snapshot the vault's files: (mtime_ns, size) as a shortcut, SHA-256 as the truth."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from ._layout import CONFIG_DIR, KNOWLEDGE_DIR, SUFFIX, is_ignored_name
from ._plan import FileState, Known


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def note_paths(root: Path) -> list[str]:
    """Relative POSIX paths of every note file (hidden folders and temp files skipped)."""
    out: list[str] = []

    def walk(folder: str, rel: str, depth: int, min_depth: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            name = e.name
            if is_ignored_name(name):  # every component is checked here, once
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    walk(e.path, f"{rel}/{name}", depth + 1, min_depth)
                elif depth >= min_depth and name.endswith(SUFFIX) and len(name) > len(SUFFIX) and e.is_file():
                    out.append(f"{rel}/{name}")
            except OSError:
                continue

    # md/<name>.md needs no folder; knowledge notes live in a category folder.
    for top, min_depth in ((CONFIG_DIR, 1), (KNOWLEDGE_DIR, 2)):
        if (root / top).is_dir():
            walk(str(root / top), top, 1, min_depth)
    return out


def snapshot(root: Path, known: Mapping[str, Known], max_bytes: int,
             paths: list[str] | None = None) -> tuple[dict[str, FileState], dict[str, bytes]]:
    """State of every note file, and the bytes of those that had to be read (changed ones)."""
    states: dict[str, FileState] = {}
    contents: dict[str, bytes] = {}
    base = str(root)
    for rel in note_paths(root) if paths is None else paths:
        full = os.path.join(base, rel)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            continue
        except OSError as exc:
            states[rel] = FileState(rel, 0, 0, None, f"cannot stat: {exc.strerror}")
            continue
        k = known.get(rel)
        if k is not None and k.synced and k.mtime_ns == st.st_mtime_ns and k.size == st.st_size:
            states[rel] = FileState(rel, st.st_mtime_ns, st.st_size, k.digest)  # the shortcut
            continue
        if st.st_size > max_bytes:
            states[rel] = FileState(rel, st.st_mtime_ns, st.st_size, None,
                                    f"larger than vault.max_file_size_kb ({st.st_size} bytes); skipped")
            continue
        try:
            with open(full, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            states[rel] = FileState(rel, st.st_mtime_ns, st.st_size, None, f"cannot read: {exc.strerror}")
            continue
        if b"\x00" in data[:8192]:
            states[rel] = FileState(rel, st.st_mtime_ns, st.st_size, None, "binary content; skipped")
            continue
        states[rel] = FileState(rel, st.st_mtime_ns, len(data), digest_of(data))
        contents[rel] = data
    return states, contents
