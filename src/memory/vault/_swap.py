"""Compare-and-swap writes and deletes: a human's edit is never overwritten or deleted.

The service may replace a note only if the file still holds the version the vault last
synced (``expected``). Checking first and renaming afterwards leaves a window in which a
human's save could land and then be overwritten; so the check is repeated *after* the swap,
on what was actually displaced:

1. write our bytes to a temporary file in the same folder and fsync it;
2. ``renameat2(RENAME_EXCHANGE)`` swaps it with the note atomically: the note now holds our
   version and the temporary name holds exactly what we displaced;
3. if the displaced file is the expected version, it is deleted: done. Otherwise a human saved
   in between — swap back (their version returns to its place), and our version goes to a
   conflict copy. If their editor also replaced our file between the two swaps, a third swap
   restores that newer save, so the human's newest version always ends in place.

A note that does not exist is created with ``RENAME_NOREPLACE``: if someone creates it first,
ours becomes the conflict copy. A delete moves the note aside atomically, verifies what it
moved, and puts it back if it was not the expected version.

What remains (stated honestly): an editor that keeps the file *open* and writes into it through
that descriptor after our verification (microseconds) writes into the displaced inode, which we
then delete — no rename-based save (vim, VS Code, JetBrains, sed -i, git) can be lost this way,
but an in-place writer racing to the microsecond can. Between the exchange and the swap back, a
reader may briefly see our version. On a file system without ``renameat2`` (non-Linux, some
network file systems) the check is repeated immediately before a plain rename: the window
shrinks to microseconds but does not close.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import hashlib
import os
import secrets
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from ._fs import LINK, O_READ, Refused, folder
from ._layout import CONFLICT_MARK, MAX_NAME_BYTES

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    _renameat2.restype = ctypes.c_int
except (AttributeError, OSError):  # not Linux, or a C library without it
    _renameat2 = None


class Unsupported(OSError):
    """renameat2 (or the flag) is not available here."""


def renameat2(dir_fd: int, src: str, dst: str, flags: int) -> None:
    if _renameat2 is None:
        raise Unsupported(errno.ENOSYS, "renameat2 is not available")
    if _renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), flags) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        raise Unsupported(err, os.strerror(err))
    raise OSError(err, os.strerror(err), dst)


def digest_at(dir_fd: int, name: str) -> str | None:
    """SHA-256 of a regular file (None if it does not exist); Refused for a link or special file."""
    try:
        fd = os.open(name, O_READ, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(LINK, link=True) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("not a regular file")
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _create(dir_fd: int, name: str, data: bytes) -> os.stat_result:
    """A new file (never through a link, never over an existing name) holding ``data``, fsynced."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        return os.fstat(fd)
    finally:
        os.close(fd)


def conflict_name(name: str, attempt: int = 0) -> str:
    suffix = f"{CONFLICT_MARK}{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}" + (f"-{attempt}" if attempt else "")
    room = MAX_NAME_BYTES - len(suffix.encode())
    stem = name.encode()[:room].decode("utf-8", "ignore")  # a long name is shortened, never refused
    return stem + suffix


def _conflict_copy(dir_fd: int, name: str, data: bytes) -> str:
    for attempt in range(100):
        candidate = conflict_name(name, attempt)
        try:
            _create(dir_fd, candidate, data)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free conflict-copy name", name)


def _unlink(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _fsync_dir(dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)


@dataclasses.dataclass(frozen=True)
class Outcome:
    written: bool  # our bytes are at the note's path
    conflict: str | None = None  # else: the name of the conflict copy (same folder) holding them
    stat: os.stat_result | None = None  # fstat of our file, when written


def _place_new(dir_fd: int, tmp: str, name: str) -> bool:
    """Rename ``tmp`` to ``name`` only if ``name`` does not exist. False if it does."""
    try:
        renameat2(dir_fd, tmp, name, RENAME_NOREPLACE)
        return True
    except FileExistsError:
        return False
    except Unsupported:
        pass
    try:  # a hard link is created only if the name is free, atomically, on every POSIX system
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError:  # no hard links here (e.g. FAT): last resort, check then rename
        if _exists(dir_fd, name):
            return False
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return True
    _unlink(dir_fd, tmp)
    return True


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _changed(dir_fd: int, name: str, expected: str | None) -> bool:
    try:
        return digest_at(dir_fd, name) != expected
    except (Refused, OSError):
        return True  # a link or an unreadable file took its place: not the version we may replace


def cas_write(root: Path, parts: Sequence[str], data: bytes, expected: str | None) -> Outcome:
    """Write ``data`` to ``root/parts…`` if the note is absent or holds ``expected``; else a conflict copy.

    Raises :class:`Refused` if a component is a symbolic link (nothing is written then).
    """
    ours = hashlib.sha256(data).hexdigest()
    with folder(root, parts[:-1], create=True) as dfd:
        name = parts[-1]
        current = digest_at(dfd, name)
        if current is not None and current != expected:
            return Outcome(False, _conflict_copy(dfd, name, data))
        tmp = f".memory-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        st = _create(dfd, tmp, data)
        try:
            outcome = _swap_in(dfd, tmp, name, data, ours, current)
        finally:
            _unlink(dfd, tmp)
        _fsync_dir(dfd)
        return outcome if not outcome.written else dataclasses.replace(outcome, stat=st)


def _swap_in(dfd: int, tmp: str, name: str, data: bytes, ours: str, current: str | None) -> Outcome:
    if current is not None:
        try:
            renameat2(dfd, tmp, name, RENAME_EXCHANGE)
        except FileNotFoundError:
            current = None  # deleted since the check: an absent note may be written
        except Unsupported:
            if _changed(dfd, name, current):  # fallback: re-check right before the rename
                return Outcome(False, _conflict_copy(dfd, name, data))
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return Outcome(True)
        else:
            if not _changed(dfd, tmp, current):
                return Outcome(True)  # we displaced exactly the version we were allowed to replace
            # A human saved between the check and the exchange: their version goes back.
            renameat2(dfd, tmp, name, RENAME_EXCHANGE)
            if _changed(dfd, tmp, ours):
                # ...and their editor also replaced our file between the two swaps: that save is
                # newer than the one we displaced, so it is the one that must stay in place.
                renameat2(dfd, tmp, name, RENAME_EXCHANGE)
            return Outcome(False, _conflict_copy(dfd, name, data))
    if _place_new(dfd, tmp, name):
        return Outcome(True)
    return Outcome(False, _conflict_copy(dfd, name, data))  # created by someone else meanwhile


def cas_delete(root: Path, parts: Sequence[str], expected: str) -> bool:
    """Delete the note only if it holds ``expected``: move it aside atomically, verify, then unlink.

    Returns False (and leaves the file) if it is absent or holds anything else. Raises
    :class:`Refused` if a component is a symbolic link.
    """
    try:
        with folder(root, parts[:-1]) as dfd:
            return _delete_in(dfd, parts[-1], expected)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _delete_in(dfd: int, name: str, expected: str) -> bool:
    if digest_at(dfd, name) != expected:
        return False
    aside = f".memory-{os.getpid()}-{secrets.token_hex(4)}.deleting"
    os.rename(name, aside, src_dir_fd=dfd, dst_dir_fd=dfd)  # a fresh hidden name: nothing is replaced
    if not _changed(dfd, aside, expected):
        _unlink(dfd, aside)
        _fsync_dir(dfd)
        return True
    # Changed between the check and the move: the human's version goes back in place...
    if not _place_new(dfd, aside, name):
        # ...unless a new file already took the name: then it is kept next to it, nothing is lost.
        for attempt in range(100):
            if _place_new(dfd, aside, conflict_name(name, attempt)):
                break
    return False
