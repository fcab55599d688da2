"""Moving a forgotten note into the vault's trash and back: never unlinked, never overwritten.

``<root>/<rel>`` goes to ``<root>/<trash_dir>/<YYYY-MM-DD>/<rel>`` (the forget's UTC date) and back.
The guarantees:

* **The note's content always has a name.** A move is ``link`` then ``unlink`` of the old name
  (the content is never deleted: the new name exists before the old one goes), or, on a file
  system without hard links, one ``rename`` onto a name checked free just before.
* **Only the forgotten note moves.** Given the tombstone's digest (SHA-256 of the file's bytes,
  as ``memory.vault`` digests notes), the file is checked *after* it got its trash name and
  before the old name goes: a different file at the path (a note written there since) loses the
  new name again and stays where it is (:class:`TrashReplaced`).
* **Nothing is overwritten.** ``link`` fails on an existing name; a clash in the trash gets a
  suffix (``name~1.md``, ``name~2.md``, ...); a restore whose original place is taken is refused
  (:class:`TrashError`), so a note written since is never replaced by an old one.
* **Hostile paths are refused** before anything moves: absolute paths, ``..`` or empty
  components, backslashes, NUL, anything under ``md/`` (configs are never forgotten), anything not
  under ``knowledge/``, any component below the root that is a symbolic link, a source that is
  not a regular file. The trash folder is hidden, so the vault's scanner never syncs it back.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

NOTES_DIR = "knowledge"
CONFIG_DIR = "md"
MAX_SUFFIX = 10_000


class TrashError(Exception):
    """A move that was refused or failed; the message says why in plain words."""


class TrashMissing(TrashError):
    """The file to move is not there (moved already, or deleted by someone else)."""


class TrashReplaced(TrashError):
    """The file at the note's path is not the forgotten note (another was written there since)."""


def file_digest(path: Path) -> str:
    """SHA-256 of a regular file's bytes, never through a symbolic link (the vault's note digest)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def trash_day(at: float) -> str:
    return _dt.datetime.fromtimestamp(at, _dt.timezone.utc).strftime("%Y-%m-%d")


def check_note_path(rel: str) -> PurePosixPath:
    """``rel`` as a safe relative path of a knowledge note, or TrashError."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        raise TrashError(f"refused: {rel!r:.120} is not a usable note path")
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise TrashError(f"refused: {rel!r:.120} is absolute or has an empty, '.' or '..' component")
    if p.parts[0] == CONFIG_DIR:
        raise TrashError(f"refused: {rel!r:.120} is under md/ (configs are never forgotten)")
    if p.parts[0] != NOTES_DIR or len(p.parts) < 3 or any(part.startswith(".") for part in p.parts):
        raise TrashError(f"refused: {rel!r:.120} is not a knowledge note (knowledge/<category>/<name>.md)")
    return p


def _no_links(root: Path, rel: PurePosixPath, last_may_be_missing: bool) -> Path:
    """The absolute path, after checking that no existing component below ``root`` is a link."""
    current = root
    for i, part in enumerate(rel.parts):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            if i == len(rel.parts) - 1 and last_may_be_missing:
                return current
            if last_may_be_missing:
                return root.joinpath(*rel.parts)  # a missing folder: nothing below can be a link
            raise TrashMissing(f"{rel} does not exist") from None
        if stat.S_ISLNK(mode):
            raise TrashError(f"refused: {current.relative_to(root)} is a symbolic link")
    return current


def _move_no_clobber(src: Path, dst: Path, expect_digest: str | None = None) -> None:
    """Give ``src``'s file the name ``dst`` (which must not exist) and drop the old name. With
    ``expect_digest``, only if the file is that content (else TrashReplaced, nothing moved)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (some FUSE or network file systems): check, then rename. A file
        # created at ``dst`` (or written at ``src``) in between would slip through; the window is
        # one system call.
        if expect_digest and file_digest(src) != expect_digest:
            raise TrashReplaced(f"{src.name} is not the forgotten note") from None
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
        os.rename(src, dst)
        return
    # Checked through the new name: it is the very file that will stay in the trash, so a note
    # swapped in at ``src`` before the link is caught, and ``src`` still holds it if so.
    if expect_digest and file_digest(dst) != expect_digest:
        os.unlink(dst)
        raise TrashReplaced(f"{src.name} is not the forgotten note")
    os.unlink(src)


def _suffixed(path: Path, n: int) -> Path:
    name = path.name
    stem, dot, ext = name.rpartition(".")
    return path.with_name(f"{stem}~{n}.{ext}" if dot and stem else f"{name}~{n}")


def move_to_trash(root: Path, rel: str, at: float, trash_dir: str = ".trash", *,
                  expect_digest: str | None = None) -> str:
    """Move the note ``rel`` (relative to ``root``) into ``<trash_dir>/<date>/<rel>``; returns the
    trash path relative to ``root``. With ``expect_digest`` (the forgotten note's SHA-256) a file
    of other content is left in place: TrashReplaced. Raises TrashError (refused, missing,
    replaced) or OSError."""
    p = check_note_path(rel)
    root = Path(root)
    src = _no_links(root, p, last_may_be_missing=False)
    if not stat.S_ISREG(os.lstat(src).st_mode):
        raise TrashError(f"refused: {rel} is not a regular file")
    day = PurePosixPath(trash_dir, trash_day(at))
    target = _no_links(root, day / p, last_may_be_missing=True)
    for n in range(MAX_SUFFIX):
        dst = target if n == 0 else _suffixed(target, n)
        try:
            _move_no_clobber(src, dst, expect_digest)
        except FileExistsError:
            continue
        return dst.relative_to(root).as_posix()
    raise TrashError(f"{rel}: {MAX_SUFFIX} files of that name in the trash already")


def restore_from_trash(root: Path, trash_rel: str, rel: str, trash_dir: str = ".trash") -> None:
    """Move ``trash_rel`` back to ``rel``. Refused (TrashError) if ``rel`` exists, if either path is
    hostile, or if ``trash_rel`` is not inside ``trash_dir``."""
    p = check_note_path(rel)
    t = PurePosixPath(trash_rel) if isinstance(trash_rel, str) and "\x00" not in trash_rel else None
    if t is None or t.is_absolute() or ".." in t.parts or not t.parts or t.parts[0] != trash_dir or len(t.parts) < 3:
        raise TrashError(f"refused: {trash_rel!r:.120} is not a path inside {trash_dir}/")
    root = Path(root)
    src = _no_links(root, t, last_may_be_missing=False)
    if not stat.S_ISREG(os.lstat(src).st_mode):
        raise TrashError(f"refused: {trash_rel} is not a regular file")
    dst = _no_links(root, p, last_may_be_missing=True)
    try:
        _move_no_clobber(src, dst)
    except FileExistsError:
        raise TrashError(f"{rel} exists again (a note was written there since); restore it by hand from "
                         f"{trash_rel}") from None
