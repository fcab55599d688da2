"""Snapshot the vault's files: (mtime_ns, size) as a shortcut, SHA-256 as the truth.

**The shortcut and racy files.** A file whose (mtime, size) equal those recorded when it was
last hashed is not read again. That is only sound if no later change can carry the same mtime:
a change within the same timestamp tick as the hash (same size) would otherwise go unseen
forever. So, as git does with its index ("racy git"), a file hashed while its mtime was within
one tick of *now* is marked racy and gets no shortcut next time; it is re-hashed once, and
from then on (its mtime now safely in the past) the shortcut applies again.

One tick is the file system's timestamp granularity — inferred from the mtimes seen in the
snapshot (1 ns on ext4/xfs/btrfs/tmpfs, 1 s or 2 s on older or FAT file systems, 2 s when
unknown) — plus :data:`TICK_NS` for the kernel's coarse clock, which stamps files up to a jiffy
behind the real time. An mtime in the future (a skewed clock, ``touch -d``) is always racy.
A vault on a network file system whose server clock runs *behind* this host's by more than
that margin is not covered: there, the watcher's events still trigger syncs, but a same-tick
change of the same size could be missed until the file changes again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ._fs import Refused, read_at, too_large, walk
from ._plan import FileState, Known

TICK_NS = 50_000_000
_STEPS = (2_000_000_000, 1_000_000_000, 100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1)


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def granularity(mtimes: Iterable[int]) -> int:
    """The coarsest timestamp step every observed mtime is a multiple of (2 s when none is known)."""
    i = 0
    for m in mtimes:
        while m % _STEPS[i]:
            i += 1
        if i == len(_STEPS) - 1:
            break  # nanoseconds: nothing finer to find
    return _STEPS[i]


def is_racy(mtime_ns: int, seen_ns: int, granularity_ns: int) -> bool:
    """True if a change made after ``seen_ns`` (when the file was about to be read) could still
    carry ``mtime_ns``: the mtime is within one tick of that moment, or after it."""
    return mtime_ns >= seen_ns - granularity_ns - TICK_NS


def shortcut_ok(k: Known | None, st: os.stat_result) -> bool:
    """The recorded digest still describes the file (a racy entry is recorded with mtime -1)."""
    return (k is not None and k.synced and k.mtime_ns >= 0 and k.mtime_ns == st.st_mtime_ns
            and k.size == st.st_size)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    states: dict[str, FileState]  # every note present (readable or not)
    contents: dict[str, bytes]  # bytes of the files that had to be read
    unlisted: dict[str, str]  # folders whose entries could not be seen, and why
    conflicts: tuple[str, ...]  # conflict copies found on the way


def snapshot(root: Path, known: Mapping[str, Known], max_bytes: int,
             clock: Callable[[], int] = time.time_ns) -> Snapshot:
    """State of every note file, and the bytes of those that had to be read (changed ones)."""
    states: dict[str, FileState] = {}
    contents: dict[str, bytes] = {}
    seen_at: dict[str, int] = {}
    mtimes: list[int] = []

    def visit(dir_fd: int, name: str, rel: str, st: os.stat_result) -> None:
        mtimes.append(st.st_mtime_ns)
        k = known.get(rel)
        if shortcut_ok(k, st):
            states[rel] = FileState(rel, st.st_mtime_ns, st.st_size, k.digest)  # type: ignore[union-attr]
            return
        if st.st_size > max_bytes:
            states[rel] = FileState(rel, st.st_mtime_ns, st.st_size, None, too_large(st.st_size))
            return
        seen = clock()
        try:
            fst, data = read_at(dir_fd, name, max_bytes)
        except FileNotFoundError:
            return
        except Refused as exc:  # e.g. swapped for a symlink since the listing
            states[rel] = FileState(rel, st.st_mtime_ns, st.st_size, None, exc.reason)
            return
        except OSError as exc:
            states[rel] = FileState(rel, st.st_mtime_ns, st.st_size, None, f"cannot read: {exc.strerror}")
            return
        if b"\x00" in data[:8192]:
            states[rel] = FileState(rel, fst.st_mtime_ns, fst.st_size, None, "binary content; skipped")
            return
        # (mtime, size) from the fstat taken *before* reading: a change during the read moves the
        # mtime away from the recorded one (or is racy), so it is never mistaken for this content.
        states[rel] = FileState(rel, fst.st_mtime_ns, fst.st_size, digest_of(data))
        contents[rel] = data
        seen_at[rel] = seen

    walked = walk(root, visit)
    step = granularity(mtimes)
    for rel, seen in seen_at.items():
        if is_racy(states[rel].mtime_ns, seen, step):
            states[rel] = dataclasses.replace(states[rel], racy=True)
    for rel, why in walked.skipped.items():
        states.setdefault(rel, FileState(rel, 0, 0, None, why))
    # A folder that could not be listed hides its notes; they are still there as far as we know.
    for where, why in walked.unlisted.items():
        prefix = f"{where}/" if where else ""
        for rel, k in known.items():
            if rel.startswith(prefix) and rel not in states:
                states[rel] = FileState(rel, k.mtime_ns, k.size, None,
                                        f"in {where or 'the vault folder'}, which {why}; kept as last synced")
    return Snapshot(states, contents, dict(walked.unlisted), tuple(sorted(walked.conflicts)))
