"""On-disk journal segments: framing, reading with resync, and quarantine of damage.

A segment is ``seg-<12 digit id>.log``: a 16-byte header (``MEMQSEG1`` and the u64 capacity the
file was preallocated with) followed by records. Each record is framed as::

    0xA7 | u32 length | u32 crc32(payload) | payload (length bytes, UTF-8 JSON array)

Reading never raises on damage. A torn tail, a zero-filled tail, a flipped bit or garbage
between records is reported as a :class:`Damage` range; the reader resynchronizes by
scanning for the next frame whose length and checksum are valid, so every intact record
before *and after* the damage is recovered. The caller copies each damaged range to the
quarantine folder and counts it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE_MAGIC = b"MEMQSEG1"
_HEADER = struct.Struct("<8sQ")
HEADER_LEN = _HEADER.size
REC_MAGIC = 0xA7
_FRAME = struct.Struct("<BII")
FRAME_LEN = _FRAME.size
MAX_RECORD = 64 * 1024 * 1024
SEG_PREFIX, SEG_SUFFIX = "seg-", ".log"


def segment_name(seg_id: int) -> str:
    return f"{SEG_PREFIX}{seg_id:012d}{SEG_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    if name.startswith(SEG_PREFIX) and name.endswith(SEG_SUFFIX):
        digits = name[len(SEG_PREFIX):-len(SEG_SUFFIX)]
        if 12 <= len(digits) <= 18 and digits.isascii() and digits.isdigit():  # names grow past 12 digits
            return int(digits)
    return None


def header(capacity: int) -> bytes:
    return _HEADER.pack(FILE_MAGIC, capacity)


def read_header(path: Path) -> int | None:
    """The capacity recorded in a segment's header, or None if the header is not ours."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(HEADER_LEN)
    except OSError:
        return None
    if len(raw) != HEADER_LEN:
        return None
    magic, capacity = _HEADER.unpack(raw)
    return capacity if magic == FILE_MAGIC else None


def frame(payload: bytes) -> bytes:
    return _FRAME.pack(REC_MAGIC, len(payload), zlib.crc32(payload)) + payload


# Payload: UTF-8 text, fields separated by U+001E. JSON bodies (obs, gate, meta, plan) are
# embedded as they are — JSON escapes every control character, so U+001E never occurs inside
# them — which spares a second JSON encoding of the largest field. Plain text fields are
# JSON-encoded strings; numbers are their repr; an empty field is None.
SEP = "\x1e"
_T, _J, _F = 0, 1, 2  # field types: text, JSON body, float
# Field types per record kind (see memory._records): 1 event, 2 turn, 3 finish, 4 edge
# (record id, src, dst, type as text; weight and time as floats), 5 touch (record id, item kind,
# item id; time).
SCHEMAS = {1: (_T, _F, _T, _J, _J, _J), 2: (_T, _T, _T, _J, _J, _T, _F), 3: (_T, _T, _T, _T, _F),
           4: (_T, _T, _T, _T, _F, _F), 5: (_T, _T, _T, _F)}
_str = json.JSONEncoder(ensure_ascii=False).encode


def _field(value: Any, typ: int) -> str:
    if value is None:
        return ""
    if typ == _T:
        return _str(value)
    if typ == _F:
        return repr(float(value))
    return value  # type: ignore[no-any-return]


_esc = json.encoder.encode_basestring  # what _str does for a str, without its Python frame


def _plain_edge(row: tuple[Any, ...]) -> bool:
    """An edge row whose fields encode exactly as the general loop would with the shortcuts above:
    four str, two float (a removal's None fields and anything else take the general loop)."""
    return (len(row) == 6 and type(row[0]) is str and type(row[1]) is str and type(row[2]) is str
            and type(row[3]) is str and type(row[4]) is float and type(row[5]) is float)


def encode(kind: int, row: tuple[Any, ...]) -> tuple[bytes, tuple[Any, ...]]:
    """Frame a record; returns the bytes and the row actually framed.

    A lone surrogate in any text field cannot be encoded as UTF-8 (nor stored by a database);
    such fields are repaired with replacement characters rather than failing the append.
    """
    if kind == 1:  # the hot path: one f-string, no loop
        eid, ts, session, obs, gate, meta = row
        text = (f"1{SEP}{_str(eid)}{SEP}{ts!r}{SEP}{_str(session)}{SEP}{obs}{SEP}"
                f"{'' if gate is None else gate}{SEP}{'' if meta is None else meta}")
    elif kind == 4 and _plain_edge(row):  # edges as add_edge makes them: one f-string, as events
        rid, src, dst, typ, weight, at = row
        text = f"4{SEP}{_esc(rid)}{SEP}{_esc(src)}{SEP}{_esc(dst)}{SEP}{_esc(typ)}{SEP}{weight!r}{SEP}{at!r}"
    else:
        text = SEP.join([str(kind), *(_field(v, t) for v, t in zip(row, SCHEMAS[kind]))])
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        row = tuple(v.encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v for v in row)
        return encode(kind, row)
    return frame(data), row


_loads = json.loads


def _text(v: str) -> Any:
    # Most text fields (ids, session keys, statuses) are plain JSON strings with nothing to
    # unescape: slicing off the quotes is ~10x cheaper than a JSON parse, and replay from disk
    # decodes every field of every record.
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"' and "\\" not in v:
        return v[1:-1]
    return _loads(v)


def decode(payload: bytes) -> tuple[int, tuple[Any, ...]]:
    parts = payload.decode("utf-8").split(SEP)
    kind = int(parts[0])
    schema = SCHEMAS[kind]
    if len(parts) != len(schema) + 1:
        raise ValueError("wrong field count")
    if kind == 1:  # events, the common case: (text, float, text, json, json, json)
        _, eid, ts, session, obs, gate, meta = parts
        return 1, (_text(eid) if eid else None, float(ts) if ts else None, _text(session) if session else None,
                   obs or None, gate or None, meta or None)
    row = tuple(None if v == "" else (_text(v) if t == _T else float(v) if t == _F else v)
                for v, t in zip(parts[1:], schema))
    return kind, row


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    seg: int
    offset: int
    end: int
    kind: int
    row: tuple[Any, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Damage:
    seg: int
    start: int
    end: int
    reason: str


def _valid_at(buf: bytes, i: int) -> int:
    """Length of a valid frame starting at ``buf[i]``, or 0."""
    if i + FRAME_LEN > len(buf) or buf[i] != REC_MAGIC:
        return 0
    _, length, crc = _FRAME.unpack_from(buf, i)
    if length == 0 or length > MAX_RECORD or i + FRAME_LEN + length > len(buf):
        return 0
    if zlib.crc32(memoryview(buf)[i + FRAME_LEN:i + FRAME_LEN + length]) != crc:
        return 0
    return FRAME_LEN + length


def scan(seg: int, buf: bytes, base: int, final: bool) -> Iterator[Record | Damage]:
    """Yield records and damage found in ``buf`` (which starts at file offset ``base``).

    When ``final`` is false, an incomplete frame at the very end is not damage: it may still be
    being written, so scanning stops there (the caller reads again later from that offset).
    """
    i, n = 0, len(buf)
    while i < n:
        size = _valid_at(buf, i)
        if size:
            payload = bytes(buf[i + FRAME_LEN:i + size])
            try:
                kind, row = decode(payload)
            except (ValueError, TypeError, IndexError, KeyError):
                yield Damage(seg, base + i, base + i + size, "undecodable payload")
            else:
                yield Record(seg, base + i, base + i + size, kind, row)
            i += size
            continue
        if not final and _incomplete_tail(buf, i):
            return
        # Damage: resync at the next offset where a complete, checksummed frame starts.
        j = i + 1
        while j < n:
            j = buf.find(bytes([REC_MAGIC]), j)
            if j < 0:
                j = n
                break
            if _valid_at(buf, j):
                break
            j += 1
        if not final and j >= n:
            return  # could be a torn write still in progress; decide when the file is final
        yield Damage(seg, base + i, base + j, _describe(buf, i, j))
        i = j


def _incomplete_tail(buf: bytes, i: int) -> bool:
    """True if ``buf[i:]`` looks like the beginning of a frame that is not fully written."""
    rest = len(buf) - i
    if rest < FRAME_LEN:
        return buf[i] == REC_MAGIC
    if buf[i] != REC_MAGIC:
        return False
    _, length, _ = _FRAME.unpack_from(buf, i)
    return 0 < length <= MAX_RECORD and i + FRAME_LEN + length > len(buf)


def _describe(buf: bytes, i: int, j: int) -> str:
    chunk = buf[i:j]
    if chunk.count(0) == len(chunk):
        return "zero-filled"
    if j >= len(buf):
        return "torn tail"
    return "checksum mismatch"


def read_segment(path: Path, seg: int, start: int, limit: int | None, max_records: int,
                 final: bool, zero_tail_ok: bool = False) -> tuple[list[Record | Damage], int]:
    """Read up to ``max_records`` items from ``path`` at ``start`` (bounded by ``limit`` bytes).

    Returns the items and the offset to continue from. Reads in chunks so a large segment is
    never held in memory whole. ``zero_tail_ok``: the file was never sealed (a crashed run's
    preallocated segment), so zeros running to the end are unused space, not damage.
    """
    out: list[Record | Damage] = []
    pos = start
    with open(path, "rb") as fh:
        end = os.fstat(fh.fileno()).st_size if limit is None else limit
        chunk = 1 << 20
        while pos < end and len(out) < max_records:
            fh.seek(pos)
            buf = fh.read(min(end - pos, chunk))
            if not buf:
                break
            at_end = pos + len(buf) >= end
            progressed = False
            for item in scan(seg, buf, pos, final=final and at_end):
                if isinstance(item, Damage) and item.end >= end and zero_tail_ok and item.reason == "zero-filled":
                    return out, end  # the unused, preallocated rest of a crashed run's segment
                out.append(item)
                progressed = True
                pos = item.end
                if len(out) >= max_records:
                    break
            if progressed:
                continue
            if at_end:
                break  # incomplete tail of a live segment: read again later
            if buf[0] == 0:
                nonzero = _next_nonzero(fh, pos, end)
                if nonzero >= end and zero_tail_ok:
                    return out, end
                if final or nonzero < end:
                    out.append(Damage(seg, pos, nonzero, "zero-filled"))
                    pos = nonzero
                    continue
                break
            chunk *= 2  # a record larger than the chunk: widen and retry
            if chunk > 2 * (MAX_RECORD + FRAME_LEN):
                out.append(Damage(seg, pos, end, "oversized frame"))
                pos = end
    return out, pos


def _next_nonzero(fh: Any, pos: int, end: int) -> int:
    """Offset of the first non-zero byte at or after ``pos`` (``end`` if none)."""
    while pos < end:
        fh.seek(pos)
        buf = fh.read(min(end - pos, 1 << 20))
        if not buf:
            return end
        stripped = buf.lstrip(b"\x00")
        if stripped:
            return pos + len(buf) - len(stripped)
        pos += len(buf)
    return end


