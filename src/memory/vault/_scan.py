"""Snapshot the vault's files: (mtime_ns, size) as a shortcut, SHA-256 as the truth."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from ._layout import CONFIG_DIR, KNOWLEDGE_DIR, is_ignored_name, is_note_path
from ._plan import FileState, Known


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def note_paths(root: Path) -> list[str]:
    """Relative POSIX paths of every note file (hidden folders and temp files skipped)."""
    out: list[str] = []

    def walk(folder: Path, rel: str) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            if is_ignored_name(e.name):
                continue
            sub = f"{rel}/{e.name}"
            try:
                if e.is_dir(follow_symlinks=False):
                    walk(Path(e.path), sub)
                elif e.is_file() and is_note_path(sub):
                    out.append(sub)
            except OSError:
                continue

    for top in (CONFIG_DIR, KNOWLEDGE_DIR):
        if (root / top).is_dir():
            walk(root / top, top)
    return out


def snapshot(root: Path, known: Mapping[str, Known], max_bytes: int,
             paths: list[str] | None = None) -> tuple[dict[str, FileState], dict[str, bytes]]:
    """State of every note file, and the bytes of those that had to be read (changed ones)."""
    states: dict[str, FileState] = {}
    contents: dict[str, bytes] = {}
    for rel in note_paths(root) if paths is None else paths:
        full = root / rel
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
