"""The JSON Lines contract (issue 14): one result per non-blank line, numbered by input
line, whatever the bytes; a byte order mark at the start is ignored; nothing crashes."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from hypothesis import example, given
from hypothesis import strategies as st

from ledger import api
from ledger.service import Ledger
from tests.support import append, catalogue, event_count, user

Conn = psycopg.Connection[Any]
BOM = "\ufeff"


def numbered(ledger: Ledger, lines: list[str] | list[bytes]) -> list[tuple[int, str]]:
    return [(n, r.status) for n, r in api.append_lines(ledger, lines)]


def test_blank_lines_get_no_result_but_count(ledger_app: Ledger) -> None:
    lines = ["", json.dumps(user("a")), "   ", "\t\r", json.dumps(user("b")), ""]
    assert numbered(ledger_app, lines) == [(2, "accepted"), (5, "accepted")]
    assert numbered(ledger_app, [line.encode() for line in lines]) == [
        (2, "duplicate"),
        (5, "duplicate"),
    ]


def test_a_byte_order_mark_at_the_start_is_ignored(ledger_app: Ledger, conn: Conn) -> None:
    first, second = json.dumps(user("a")), json.dumps(user("b"))
    assert numbered(ledger_app, [BOM + first, second]) == [(1, "accepted"), (2, "accepted")]
    assert numbered(ledger_app, [(BOM + first).encode(), second.encode()]) == [
        (1, "duplicate"),
        (2, "duplicate"),
    ]
    assert numbered(ledger_app, [BOM, second]) == [(2, "duplicate")]  # a BOM alone is blank
    # anywhere else it is not whitespace: the line is malformed
    results = list(api.append_lines(ledger_app, [first, BOM + second]))
    assert [r.status for _, r in results] == ["duplicate", "rejected"]
    assert results[1][1].error is not None and results[1][1].error.code == "validation_error"
    assert event_count(conn) == 2


# a line: any bytes but a newline (the reader splits on it), sometimes a near-command
LINES = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"", b" ", b"\t", b"\r", b"\xef\xbb\xbf", b"\xff\xfe", b"{}", b"[]", b"null"]),
    st.builds(
        lambda cut, garbage: json.dumps(user("u1")).encode()[:cut] + garbage,
        st.integers(0, 60),
        st.binary(max_size=4).map(lambda b: b.replace(b"\n", b"")),
    ),
    st.just(json.dumps(user("u1")).encode()),
)


@given(lines=st.lists(LINES, max_size=12))
def test_any_bytes_get_exactly_one_result_per_non_blank_line(
    ledger_app: Ledger, conn: Conn, lines: list[bytes]
) -> None:
    if event_count(conn) == 0:  # the catalogue, once for all examples
        append(ledger_app, *catalogue())
    results = list(api.append_lines(ledger_app, lines))
    starts_with_bom = bool(lines) and lines[0].startswith(b"\xef\xbb\xbf")
    expected = [
        n
        for n, line in enumerate(lines, start=1)
        if (line[3:] if n == 1 and starts_with_bom else line).strip()
    ]
    assert [n for n, _ in results] == expected
    for _, result in results:
        assert result.status in ("accepted", "duplicate", "rejected")
        if result.status == "rejected":
            assert result.error is not None and result.error.code == "validation_error"


TIMES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0000-00-00T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00.1234567Z",
            "+002026-01-01T00:00:00Z",
            "2026-01-01",
        ]
    ),
    st.text(max_size=30),
    st.integers(),
)


@given(occurred=TIMES, expires=TIMES)
@example(occurred="0001-01-01T00:00:00+01:00", expires="2026-01-01T00:00:00Z")  # OverflowError
@example(occurred="2026-01-01T00:00:00Z", expires="9999-12-31T23:59:59-01:00")
def test_any_time_value_is_answered_never_a_crash(
    ledger_app: Ledger, occurred: Any, expires: Any
) -> None:
    command = {
        "type": "access.grant",
        "user_id": "nobody",
        "content_id": "33333333-3333-4333-8333-333333333333",
        "access_type": "preview",
        "occurred_at": occurred,
        "expires_at": expires,
    }
    (result,) = [r for _, r in api.append_lines(ledger_app, [json.dumps(command)])]
    # a well-formed grant for an unknown user is not_found; anything else is invalid input
    assert result.status == "rejected" and result.error is not None
    assert result.error.code in ("validation_error", "not_found")
    if result.error.code == "validation_error":
        assert result.error.field in ("occurred_at", "expires_at")
