"""The chain walk on hand-made binary COPY streams, and the anchors' rules (no database)."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.audit.anchors import Anchor, check, parse_anchor, read_anchors, record
from ledger.audit.chain import COPY_SIGNATURE, EPOCH_2000, GENESIS, event_hash, walk

Event = tuple[int, uuid.UUID, int, str, bytes, datetime]


def events(count: int) -> list[Event]:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    return [
        (
            n * 2,  # gaps, as rolled-back appends leave
            uuid.uuid5(uuid.NAMESPACE_URL, f"aggregate-{n % 3}"),
            n // 3 + 1,
            "PurchaseCompleted" if n % 2 else "UserRegistered",
            f'{{"n": {n}, "name": "ünïcode"}}'.encode(),
            start + timedelta(microseconds=n * 1_000_001),
        )
        for n in range(1, count + 1)
    ]


def chained(rows: list[Event]) -> list[tuple[Event, bytes]]:
    out = []
    previous = GENESIS
    for row in rows:
        previous = event_hash(previous, *row)
        out.append((row, previous))
    return out


def field(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def stream(rows: list[tuple[Event, bytes]]) -> bytes:
    """What ``COPY (SELECT notification_id, ..., hash) TO STDOUT (FORMAT binary)`` sends."""
    out = bytearray(COPY_SIGNATURE + struct.pack(">ii", 0, 0))
    for (position, originator, version, topic, state, recorded), digest in rows:
        micros = (recorded - EPOCH_2000) // timedelta(microseconds=1)
        out += struct.pack(">h", 7)
        out += field(struct.pack(">q", position)) + field(originator.bytes)
        out += field(struct.pack(">q", version)) + field(topic.encode()) + field(state)
        out += field(struct.pack(">q", micros)) + field(digest)
    return bytes(out + b"\xff\xff")


def test_an_intact_chain_walks_to_its_head() -> None:
    rows = chained(events(7))
    walked = walk([stream(rows)])
    assert walked.first_break is None
    assert (walked.events, walked.head_position, walked.head_hash) == (7, 14, rows[-1][1])


def test_an_empty_log_has_the_genesis_head() -> None:
    walked = walk([stream([])])
    assert (walked.events, walked.head_position, walked.head_hash) == (0, 0, GENESIS)


@given(st.lists(st.integers(1, 4000), min_size=1, max_size=12))
def test_chunk_boundaries_do_not_matter(cuts: list[int]) -> None:
    rows = chained(events(9))
    data = stream(rows)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    walked = walk(chunks, watch={6, 10})
    assert walked.first_break is None and walked.head_hash == rows[-1][1]
    assert walked.watched == {6: rows[2][1], 10: rows[4][1]}


def test_an_edited_event_breaks_at_itself() -> None:
    rows = chained(events(6))
    (position, originator, version, topic, state, recorded), digest = rows[3]
    rows[3] = ((position, originator, version, topic, state.replace(b"4", b"5"), recorded), digest)
    broken = walk([stream(rows)]).first_break
    assert broken is not None and (broken.position, broken.previous_position) == (8, 6)


@pytest.mark.parametrize("column", [0, 1, 2, 3, 5])
def test_every_stored_column_is_covered(column: int) -> None:
    rows = chained(events(4))
    event = list(rows[1][0])
    changed = {
        0: 3,
        1: uuid.uuid4(),
        2: 99,
        3: "PurchaseRefunded",
        5: event[5] + timedelta(microseconds=1),
    }
    event[column] = changed[column]
    rows[1] = (tuple(event), rows[1][1])  # type: ignore[assignment]
    broken = walk([stream(rows)]).first_break
    assert broken is not None and broken.previous_position == 2


def test_a_removed_event_breaks_at_its_successor() -> None:
    rows = chained(events(6))
    del rows[2]
    broken = walk([stream(rows)]).first_break
    assert broken is not None and (broken.position, broken.previous_position) == (8, 4)
    assert "breaks at position 8" in broken.describe()


def test_an_event_slipped_in_with_a_correct_hash_breaks_the_next_link() -> None:
    rows = chained(events(5))
    forged_event: Event = (5, uuid.uuid4(), 1, "PurchaseCompleted", b"{}", rows[1][0][5])
    forged = (forged_event, event_hash(rows[1][1], *forged_event))
    rows.insert(2, forged)
    broken = walk([stream(rows)]).first_break
    assert broken is not None and broken.position == 6  # the event after the forged one


def test_swapped_positions_break_at_the_first_of_them() -> None:
    rows = chained(events(6))
    (a, b) = rows[2], rows[3]
    rows[2] = ((b[0][0] - 2, *b[0][1:]), b[1])
    rows[3] = ((a[0][0] + 2, *a[0][1:]), a[1])
    broken = walk([stream(rows)]).first_break
    assert broken is not None and broken.position == 6


def test_a_malformed_row_is_named() -> None:
    rows = chained(events(3))
    data = stream(rows)
    # the second row's hash declared 31 bytes long
    index = data.index(field(rows[1][1]))
    bad = data[:index] + struct.pack(">i", 31) + data[index + 4 :]
    broken = walk([bad]).first_break
    assert broken is not None and broken.malformed and "malformed" in broken.describe()


def test_a_stream_cut_short_is_an_error() -> None:
    data = stream(chained(events(3)))
    with pytest.raises(ValueError, match="ended early"):
        walk([data[:-40]])
    with pytest.raises(ValueError, match="binary COPY"):
        walk([b"not a copy stream at all"])


# --- anchors -------------------------------------------------------------------------


def test_anchor_syntax() -> None:
    digest = "AB" * 32
    assert parse_anchor(f" 42:{digest} ") == Anchor(42, digest.lower())
    for bad in ("42", f"x:{digest}", "42:abc", f"-1:{digest}", f"42:{digest}0"):
        with pytest.raises(ValueError, match="POSITION:HASH"):
            parse_anchor(bad)


def test_anchors_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "anchors.txt"
    path.write_text("# heads kept by finance\n\n")
    record(path, Anchor(7, "a" * 64))
    record(path, Anchor(9, "b" * 64))
    assert read_anchors(path) == [Anchor(7, "a" * 64), Anchor(9, "b" * 64)]
    path.write_text("7:nothex\n")
    with pytest.raises(ValueError, match="line 1"):
        read_anchors(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_anchors(tmp_path / "missing.txt")


def test_anchor_rules() -> None:
    a, b = b"\x01" * 32, b"\x02" * 32
    watched = {4: a, 8: b}
    assert (
        check([Anchor(4, a.hex()), Anchor(8, b.hex()), Anchor(0, GENESIS.hex())], watched, 8)
        is None
    )
    assert "rewritten" in (check([Anchor(4, b.hex())], watched, 8) or "")
    assert "no longer in the log" in (check([Anchor(6, a.hex())], watched, 8) or "")
    assert "removed from its end" in (check([Anchor(12, a.hex())], watched, 8) or "")
    # the first failing anchor in position order is the one named
    problem = check([Anchor(12, a.hex()), Anchor(4, b.hex())], watched, 8) or ""
    assert "anchored position 4" in problem
