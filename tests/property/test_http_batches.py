"""A JSON array batch is cut into its elements' own texts: for any array of JSON values,
each text parses back to its element, so a command in a batch is parsed (strictly, as a
line of ``ledger append``) from exactly what the client sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.config import ConfigurationError
from ledger.http.answers import BadRequest, TooLarge
from ledger.http.auth import ALL_SCOPES
from ledger.http.bodies import batch_lines
from ledger.http.config import HttpConfig, from_env

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
SPACE = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])
CONFIG = HttpConfig(max_batch_commands=10_000, max_batch_bytes=10**7)


@given(st.lists(JSON, max_size=12), SPACE, st.booleans())
def test_every_element_text_parses_back_to_its_element(
    elements: list[Any], space: str, indent: bool
) -> None:
    body = json.dumps(elements, indent=2 if indent else None).replace("[", "[" + space, 1)
    texts = batch_lines(body.encode(), "application/json", CONFIG)
    assert [json.loads(t) for t in texts] == elements


@given(st.lists(st.dictionaries(st.text(max_size=8), JSON, max_size=3), max_size=12))
def test_ndjson_keeps_line_numbers(objects: list[dict[str, Any]]) -> None:
    body = "".join(json.dumps(o) + "\n\n" for o in objects).encode()
    lines = batch_lines(body, "application/x-ndjson; charset=utf-8", CONFIG)
    assert [json.loads(lines[2 * n]) for n in range(len(objects))] == objects


@pytest.mark.parametrize(
    "body", [b"", b"{}", b"[", b"[1,", b"[1 2]", b"[1],", b"[1] x", b"\xff[]", b"[1,]"]
)
def test_a_body_that_is_no_array_is_refused_naming_why(body: bytes) -> None:
    with pytest.raises(BadRequest) as refused:
        batch_lines(body, "application/json", CONFIG)
    assert refused.value.status == 422 and refused.value.message


def test_counts_and_sizes_are_bounded() -> None:
    small = HttpConfig(max_batch_commands=2, max_command_bytes=10)
    with pytest.raises(TooLarge, match="3 commands; the limit is 2"):
        batch_lines(b"[1, 2, 3]", "application/json", small)
    with pytest.raises(TooLarge, match="command 1 is 12 bytes"):
        batch_lines(b'["0123456789"]', "application/json", small)
    assert batch_lines(b"1\n\n2\n", "application/x-ndjson", small) == [b"1", b"", b"2", b""]


def test_settings_from_the_environment() -> None:
    config = from_env(
        {
            "LEDGER_API_TOKENS": " a, b ,,",
            "LEDGER_HTTP_MAX_IN_FLIGHT": "7",
            "LEDGER_HTTP_WRITERS": "2",
        }
    )
    assert [t.secret for t in config.tokens] == [b"a", b"b"]
    assert {t.scopes for t in config.tokens} == {ALL_SCOPES}
    assert (config.max_in_flight, config.writers) == (7, 2)
    for bad in ("0", "-1", "1.5", "many", "9" * 13):
        with pytest.raises(ConfigurationError, match="LEDGER_HTTP_MAX_IN_FLIGHT"):
            from_env({"LEDGER_HTTP_MAX_IN_FLIGHT": bad})
