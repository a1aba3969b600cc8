"""``validate_command``'s fast path for a heartbeat built in Python accepts and rejects
exactly what the full validation (pydantic's dump, then its strict validation, then the
rules across fields) does, with the same error: for any values a ``RecordPlayback`` can be
made to hold (``model_construct`` and ``model_copy`` validate nothing), valid or not, of
the expected types or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from ledger.commands.access import RecordPlayback
from ledger.commands.base import Command
from ledger.commands.fields import MAX_INT
from ledger.commands.parsing import valid_heartbeat, validate_command, validated_in_full
from ledger.domain.errors import Rejected
from ledger.domain.provenance import Provenance

# the full validation dumps what ``model_construct`` let in, which pydantic warns about
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")


class _Text(str):
    """A subclass of ``str``: strict validation may treat it otherwise than a ``str``."""


class _Int(int):
    pass


good_ids = st.text(min_size=1, max_size=8, alphabet="abc-_.é漢")
bad_ids = (
    st.text(max_size=4)
    | st.sampled_from(["", " alice", "alice ", "a\u200bb", "a\x00b", "\ud800", "x" * 256])
    | st.text(min_size=250, max_size=260, alphabet="ab")
    | st.builds(_Text, st.sampled_from(["alice", "bob"]))
    | st.integers(min_value=0, max_value=3)
)
good_counts = st.integers(min_value=0, max_value=100) | st.sampled_from([MAX_INT - 1, MAX_INT])
bad_counts = (
    st.integers(min_value=-2, max_value=0)
    | st.sampled_from([MAX_INT + 1, 2**80, "5", None])
    | st.booleans()
    | st.builds(_Int, st.integers(min_value=0, max_value=10))
    | st.floats(min_value=0, max_value=10)
)
zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
good_moments = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=zones
)
bad_moments = (
    st.datetimes(min_value=datetime(1999, 12, 30), max_value=datetime(2100, 1, 2), timezones=zones)
    | st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))  # naive
    | st.sampled_from(["2026-01-01T00:00:00+00:00", 1_700_000_000])
)
# each field's values that pass its own rule, and values of any kind (most break it)
FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "type": (st.just("playback.progress"), st.sampled_from(["access.grant", _Text("x")])),
    "user_id": (good_ids, bad_ids),
    "content_id": (
        st.sampled_from([UUID("33333333-3333-4333-8333-333333333333"), UUID(int=0)]),
        st.just("33333333-3333-4333-8333-333333333333"),
    ),
    "position_seconds": (good_counts, bad_counts),  # beyond the duration now and then
    "duration_seconds": (st.integers(min_value=90, max_value=MAX_INT), bad_counts),
    "occurred_at": (good_moments, bad_moments),
    "idempotency_key": (st.none() | good_ids, bad_ids),
}
ODD = ("left out", "an extra field", "a field copied in unvalidated")


@given(
    broken=st.just([]) | st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=2),
    odd=st.none() | st.sampled_from(ODD),
    data=st.data(),
)
def test_the_fast_path_agrees_with_the_full_validation(
    broken: list[str], odd: str | None, data: st.DataObject
) -> None:
    """Valid heartbeats, and heartbeats with one or two fields given any value, or a
    field left out, an unknown one added, or one set unvalidated by ``model_copy``."""
    values = {
        name: data.draw(bad if name in broken else good) for name, (good, bad) in FIELDS.items()
    }
    if odd == "left out":
        del values[data.draw(st.sampled_from(sorted(FIELDS)))]
    made = RecordPlayback.model_construct(**values)
    if odd == "an extra field":
        made = made.model_copy(update={"reason": "x"})
    elif odd == "a field copied in unvalidated":
        made = made.model_copy(update={"position_seconds": "7"})
    made = made.stamped("http", "req-1")
    try:
        expected: Command | Rejected = validated_in_full(made)
    except Rejected as error:
        expected = error
    try:
        got: Command | Rejected = validate_command(made)
    except Rejected as error:
        got = error
    event("rejected" if isinstance(expected, Rejected) else "accepted")
    if isinstance(expected, Rejected):
        assert isinstance(got, Rejected)
        assert (type(got), str(got), got.field) == (type(expected), str(expected), expected.field)
        assert not valid_heartbeat(made)  # never let through what the full validation refuses
    else:
        assert isinstance(got, RecordPlayback)
        assert got == expected
        assert got.model_dump() == expected.model_dump()
        assert got.provenance == expected.provenance == Provenance("http", "req-1")


@given(
    user=st.text(min_size=1, max_size=30).filter(lambda t: t == t.strip() and t.isprintable()),
    position=st.integers(min_value=0, max_value=MAX_INT),
    at=st.datetimes(
        min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
    ),
)
def test_a_heartbeat_built_in_python_takes_the_fast_path(
    user: str, position: int, at: datetime
) -> None:
    """What the typed API builds is valid already: it is taken as it is, not revalidated."""
    command = RecordPlayback(
        user_id=user,
        content_id=UUID(int=7),
        position_seconds=position,
        duration_seconds=MAX_INT,
        occurred_at=at,
    )
    assert valid_heartbeat(command)
    assert validate_command(command) is command
