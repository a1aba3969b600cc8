"""The cursor of every chain (ledger/reading/cursor.py): its text round-trips, for any
cursor, and bad text is refused naming ``after`` and the rule."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.reading.cursor import MAX_POSITION, PLATFORM, Cursor, parse_cursor

chains = st.one_of(st.just(PLATFORM), st.uuids())
cursors = st.dictionaries(chains, st.integers(0, MAX_POSITION), max_size=20).map(Cursor)


@given(cursors)
def test_the_text_of_any_cursor_reads_back_as_the_same_cursor(cursor: Cursor) -> None:
    text = str(cursor)
    assert parse_cursor(text) == cursor
    assert str(parse_cursor(text)) == text  # canonical
    assert parse_cursor(text.upper().replace("PLATFORM", "platform")) == cursor
    assert set(text) <= set("0123456789abcdef-:,platform")  # pasteable without quotes
    assert not text.isdigit()  # never read as a global position


@given(cursors, st.dictionaries(chains, st.integers(0, MAX_POSITION), max_size=5))
def test_advancing_never_moves_a_chain_back(cursor: Cursor, moves: dict[UUID, int]) -> None:
    moved = cursor.advanced(moves)
    for chain in {*cursor, *moves}:
        assert moved[chain] == max(cursor[chain], moves.get(chain, 0))


def test_chains_at_zero_are_left_out_and_nothing_read_is_platform_zero() -> None:
    a = UUID("0a000000-0000-4000-8000-00000000000a")
    assert str(Cursor()) == "platform:0" and parse_cursor("platform:0") == Cursor()
    assert Cursor({a: 0, PLATFORM: 3}) == Cursor({PLATFORM: 3})
    assert str(Cursor({a: 7, PLATFORM: 3})) == f"platform:3,{a}:7"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "platform",
        "platform:",
        "platform:-1",
        "platform:1,platform:2",
        "nope:1",
        "0a000000000040008000000000000000a:1",
        "{0a000000-0000-4000-8000-00000000000a}:1",
        "platform:1 ,",
        "platform:99999999999999999999",
        "é:1",
        "platform:\uff11",
    ],
)
def test_bad_text_is_refused_naming_after(text: str) -> None:
    with pytest.raises(ValueError, match=r"^after: "):
        parse_cursor(text)
