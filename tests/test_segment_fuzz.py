"""Fuzz the journal reader: truncation at every offset and random bit flips of a real segment."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from memory.queue._segments import FRAME_LEN, HEADER_LEN, SEP, Damage, Record, decode, encode, header, read_segment


def make_segment(path: Path, n: int) -> list[tuple[int, int, tuple]]:
    """A real segment with ``n`` event records; returns (start, end, row) of each."""
    data = bytearray(header(0))
    spans = []
    for i in range(n):
        row = (f"{i:026x}", 1.5 + i, f"sess-{i % 3}", '{"text":"hé 🎉 %d"}' % i, None if i % 2 else '{"g":1}', "{}")
        framed, row = encode(1, row)
        spans.append((len(data), len(data) + len(framed), row))
        data += framed
    path.write_bytes(bytes(data))
    return spans


def read_all(path: Path, final: bool = True) -> list[Record | Damage]:
    out, pos = [], HEADER_LEN
    while True:
        found, new = read_segment(path, 1, pos, None, 1000, final=final)
        out += found
        if new == pos or not found:
            return out
        pos = new


def test_truncation_at_every_offset(tmp_path: Path) -> None:
    src = tmp_path / "seg.log"
    spans = make_segment(src, 12)
    full = src.read_bytes()
    cut = tmp_path / "cut.log"
    for size in range(HEADER_LEN, len(full) + 1):
        cut.write_bytes(full[:size])
        items = read_all(cut)
        records = [i for i in items if isinstance(i, Record)]
        intact = [row for start, end, row in spans if end <= size]
        assert [r.row for r in records] == intact, size
        damage = [i for i in items if isinstance(i, Damage)]
        torn = any(start < size < end for start, end, _ in spans)
        assert bool(damage) == torn, size  # a torn tail is reported (and quarantined), nothing else
        if damage:
            assert damage[-1].end == size and damage[-1].reason == "torn tail"


def test_random_bit_flips_lose_only_the_hit_record(tmp_path: Path) -> None:
    src = tmp_path / "seg.log"
    spans = make_segment(src, 40)
    full = src.read_bytes()
    rng = random.Random(1234)
    flipped = tmp_path / "flip.log"
    for _ in range(400):
        data = bytearray(full)
        hits = sorted(rng.sample(range(HEADER_LEN, len(full)), rng.randint(1, 3)))
        for h in hits:
            data[h] ^= 1 << rng.randrange(8)
        flipped.write_bytes(bytes(data))
        items = read_all(flipped)
        got = [i.row for i in items if isinstance(i, Record)]
        untouched = [row for start, end, row in spans if not any(start <= h < end for h in hits)]
        written = [row for _, _, row in spans]
        assert all(r in written for r in got)  # the checksum never lets a damaged record through
        assert [r for r in untouched if r not in got] == []  # every intact record is recovered
        assert len(got) == len(set(map(repr, got)))
        assert any(isinstance(i, Damage) for i in items)


def test_zero_filled_tail_and_hole(tmp_path: Path) -> None:
    src = tmp_path / "seg.log"
    spans = make_segment(src, 10)
    full = bytearray(src.read_bytes())
    # A zero-filled hole in the middle: records 3-4 lost, everything after recovered.
    hole = bytearray(full)
    hole[spans[3][0]:spans[4][1]] = bytes(spans[4][1] - spans[3][0])
    src.write_bytes(bytes(hole))
    items = read_all(src)
    assert [i.row for i in items if isinstance(i, Record)] == [r for k, (_, _, r) in enumerate(spans) if k not in (3, 4)]
    assert [i.reason for i in items if isinstance(i, Damage)] == ["zero-filled"]
    # A zero-filled tail of a sealed file is damage; of an unsealed (preallocated) one it is free space.
    tail = bytearray(full) + bytes(4096)
    src.write_bytes(bytes(tail))
    items = read_all(src)
    assert [i.reason for i in items if isinstance(i, Damage)] == ["zero-filled"]
    found, end = read_segment(src, 1, HEADER_LEN, None, 1000, final=True, zero_tail_ok=True)
    assert all(isinstance(i, Record) for i in found) and len(found) == 10 and end == len(tail)


class Key(str):
    """A str subclass: takes the general loop, must encode the same."""


def test_edge_records_encode_as_the_general_loop_does_and_decode_back() -> None:
    # add_edge's rows take a shortcut in encode(); whatever the row, the bytes must be the ones the
    # general loop writes (text fields as JSON strings, floats as their repr), so a journal written
    # before the shortcut and one written after read the same.
    rows = [
        ("0" * 26, "a" * 26, "facts/coffee", "related_to", 0.5, 1700000000.123456),
        ("1" * 26, 'q"uo\\te', "tab\tnew\nline\x00\x1e", "ü 🎉 中", -0.0, 1.0),
        ("2" * 26, "a", "b", "t", math.nan, math.inf),
        ("3" * 26, "a", "b", "t", 1.7976931348623157e308, 0.0),
        ("4" * 26, "gone", None, None, 0.0, 2.0),  # a removal
        ("5" * 26, Key("sub"), "b", "t", 1, 2),  # not exactly str / float
        ("7" * 26, "a", "b", None, 0.5, 1.0),  # no type: the store refuses it, the journal keeps it
        ("6" * 26, "lone \ud800 surrogate", "b", "t", 0.25, 3.0),
    ]
    for row in rows:
        framed, stored = encode(4, row)
        expected = SEP.join(["4", *("" if v is None else json.dumps(v, ensure_ascii=False) for v in stored[:4]),
                             *(repr(float(v)) for v in stored[4:])])
        assert framed[FRAME_LEN:] == expected.encode("utf-8"), row
        kind, back = decode(framed[FRAME_LEN:])
        assert kind == 4 and back[:4] == tuple(stored[:4]), row
        assert [repr(float(v)) for v in back[4:]] == [repr(float(v)) for v in stored[4:]], row
    assert encode(4, rows[-1])[1][1] == "lone ? surrogate"  # repaired, like any text field
