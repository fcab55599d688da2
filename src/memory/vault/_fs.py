"""Reading the vault without ever leaving it.

Every path below the vault root is opened one component at a time, relative to the
descriptor of its parent, with ``O_NOFOLLOW``: a symbolic link anywhere below the root is
refused at the moment of the open, so a link swapped in after some earlier check (``lstat``,
``realpath``) cannot redirect a read or a write. Files are opened ``O_NONBLOCK`` and checked
with ``fstat`` on the opened descriptor, so a FIFO or device named ``x.md`` cannot block or
feed the scanner, and the size that is checked is the size of what is read.

The root itself is the configured trust anchor: it may be (or sit under) a symlink.

The walker reports, instead of silently skipping:

* ``unlisted`` — folders whose entries could not be seen (cannot be opened or listed, a
  symlinked folder, nested too deep). The caller keeps every note it knew below them as
  *present but unreadable*: a listing error must never look like a deletion.
* ``skipped`` — note files that are not read (symlinks, special files, names whose key the
  vault refuses), reported as present so rows synced earlier are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ._layout import (CONFIG_DIR, CONFLICT_MARK, KNOWLEDGE_DIR, MAX_KEY_CHARS, SUFFIX, is_ignored_name,
                      scanned_key_problem)

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A key holds at most 255 characters, so no note can sit deeper than ~128 folders; the bound
# also caps the descriptors held open by the recursive walk.
MAX_DEPTH = MAX_KEY_CHARS // 2 + 2

LINK = "symbolic link; the vault follows no links (skipped)"
LINK_FOLDER = "is a symbolic link; the vault follows no links, so nothing behind it is read"


class Refused(Exception):
    """The vault will not read this entry (a link, a special file, too large). ``reason`` says why;
    ``link`` is true when it is a symbolic link (a key naming it is refused, not just unread)."""

    def __init__(self, reason: str, link: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.link = link


def too_large(size: int) -> str:
    return f"larger than vault.max_file_size_kb ({size} bytes); skipped"


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_dir_at(dir_fd: int, name: str, create: bool = False) -> int:
    """Descriptor of the folder ``name`` in ``dir_fd``; never through a link (Refused)."""
    try:
        return os.open(name, O_DIR, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=dir_fd)
        return open_dir_at(dir_fd, name, create=False)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(dir_fd, name):
            raise Refused(f"{name!r} {LINK_FOLDER}", link=True) from None
        raise


def open_root(root: Path, create: bool = False) -> int:
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


@contextlib.contextmanager
def folder(root: Path, parts: Sequence[str], create: bool = False) -> Iterator[int]:
    """A descriptor of ``root/parts…``, each component opened without following links.

    Raises FileNotFoundError / NotADirectoryError when a component is missing (and ``create``
    is false), :class:`Refused` when one is a symbolic link.
    """
    fd = open_root(root, create)
    try:
        for part in parts:
            child = open_dir_at(fd, part, create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def read_at(dir_fd: int, name: str, max_bytes: int | None) -> tuple[os.stat_result, bytes]:
    """(fstat taken before reading, content) of a regular file; Refused for anything else."""
    try:
        fd = os.open(name, O_READ, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(LINK, link=True) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not a regular file; skipped")
        if max_bytes is not None and st.st_size > max_bytes:
            raise Refused(too_large(st.st_size))
        cap = max_bytes + 1 if max_bytes is not None else None
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow while it is read: never read past the limit
            want = max(st.st_size + 1, 65536) if cap is None else min(max(st.st_size + 1, 65536), cap - total)
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if cap is not None and total >= cap:
                raise Refused(too_large(total))
        return st, b"".join(chunks)
    finally:
        os.close(fd)


def read_note(root: Path, rel: str, max_bytes: int | None) -> tuple[os.stat_result, bytes]:
    """Read ``root/rel`` without following any link below the root."""
    parts = rel.split("/")
    with folder(root, parts[:-1]) as fd:
        return read_at(fd, parts[-1], max_bytes)


def write_root_file(root: Path, name: str, data: bytes) -> None:
    """Replace ``root/name`` atomically (a cache file: no fsync). Never writes through a link:
    a link planted at the temporary name is removed, not followed."""
    tmp = f".{name}.{os.getpid()}.tmp"
    with folder(root, (), create=True) as fd:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=fd)
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
        finally:
            os.close(out)
        try:
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise


# -- the walk ----------------------------------------------------------------------------------------
Visit = Callable[[int, str, str, os.stat_result], None]  # (folder fd, file name, relative path, lstat)


@dataclasses.dataclass
class Walk:
    unlisted: dict[str, str] = dataclasses.field(default_factory=dict)  # folder → why its entries were not seen
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # note path → why it is not read
    conflicts: list[str] = dataclasses.field(default_factory=list)  # conflict copies found


def _key_problem(rel: str) -> str | None:
    # Fast path for the common case (the no-change re-sync of a large vault calls this per note):
    # the walk already refused hidden and temporary components, and the file system bounds each
    # name, so a short, printable key without a backslash needs no further checks.
    key_chars = len(rel) - len(SUFFIX) - (len(KNOWLEDGE_DIR) if rel[0] == KNOWLEDGE_DIR[0] else len(CONFIG_DIR)) - 1
    if key_chars <= MAX_KEY_CHARS and rel.isprintable() and "\\" not in rel:
        return None
    return scanned_key_problem(rel)


def walk(root: Path, visit: Visit, tops: Sequence[str] = (CONFIG_DIR, KNOWLEDGE_DIR)) -> Walk:
    """Call ``visit`` for every note file below ``tops`` (a regular file, reached through no link)."""
    out = Walk()
    try:
        root_fd = open_root(root)
    except FileNotFoundError:
        return out  # no vault yet
    except OSError as exc:
        out.unlisted[""] = f"cannot be opened: {exc.strerror}"
        return out
    try:
        for top in tops:
            min_depth = 1 if top == CONFIG_DIR else 2  # knowledge notes live in a category folder
            _enter(root_fd, top, top, 1, min_depth, visit, out)
    finally:
        os.close(root_fd)
    return out


def _enter(parent_fd: int, name: str, rel: str, depth: int, min_depth: int, visit: Visit, out: Walk) -> None:
    if depth > MAX_DEPTH:
        out.unlisted[rel] = f"is nested more than {MAX_DEPTH} folders deep; not read"
        return
    try:
        fd = open_dir_at(parent_fd, name)
    except (FileNotFoundError, NotADirectoryError):
        return  # gone, or a plain file where a folder could be: no notes there
    except Refused:
        out.unlisted[rel] = LINK_FOLDER
        return
    except OSError as exc:
        out.unlisted[rel] = f"cannot be opened: {exc.strerror}"
        return
    try:
        try:
            with os.scandir(fd) as it:
                entries = list(it)
        except OSError as exc:
            out.unlisted[rel] = f"cannot be listed: {exc.strerror}"
            return
        for e in entries:
            _entry(fd, e, rel, depth, min_depth, visit, out)
    finally:
        os.close(fd)


def _entry(fd: int, e: os.DirEntry[str], rel: str, depth: int, min_depth: int, visit: Visit, out: Walk) -> None:
    name = e.name
    child = f"{rel}/{name}"
    if is_ignored_name(name):
        if CONFLICT_MARK in name and not name.startswith("."):
            out.conflicts.append(child)
        return
    is_note = depth >= min_depth and name.endswith(SUFFIX) and len(name) > len(SUFFIX)
    try:
        if e.is_dir(follow_symlinks=False):
            _enter(fd, name, child, depth + 1, min_depth, visit, out)
            return
        if e.is_symlink():
            if is_note:
                out.skipped[child] = LINK
            elif "." not in name:  # looks like a folder: say why nothing below it is read
                out.unlisted[child] = LINK_FOLDER
            return
        if not is_note:
            return
        st = e.stat(follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as exc:
        if is_note:
            out.skipped[child] = f"cannot stat: {exc.strerror}"
        return
    if not stat.S_ISREG(st.st_mode):
        out.skipped[child] = "not a regular file; skipped"
        return
    problem = _key_problem(child)
    if problem is not None:
        out.skipped[child] = problem
        return
    visit(fd, name, child, st)
