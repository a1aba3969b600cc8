"""Provenance travels with a command object, outside its JSON and its fingerprint."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.commands.catalogue import RegisterUser
from ledger.commands.parsing import parse_command, validate_command
from ledger.domain.errors import ValidationFailed
from ledger.domain.provenance import MAX_CORRELATION_ID, SOURCES, Provenance, line_id

USER = '{"type": "user.register", "user_id": "alice", "idempotency_key": "k-1"}'


def test_a_command_comes_from_the_api_unless_stamped() -> None:
    assert parse_command(USER).provenance == Provenance("api", None)


@pytest.mark.parametrize("source", SOURCES)
def test_stamping_leaves_json_and_fingerprint_alone(source: str) -> None:
    command = parse_command(USER)
    stamped = command.stamped(source, "req-7")
    assert stamped.provenance == Provenance(source, "req-7")
    assert command.provenance == Provenance("api", None)  # the original is unchanged
    assert stamped.model_dump_json() == command.model_dump_json()
    assert stamped.fingerprint() == command.fingerprint()
    assert stamped.fingerprints().forms == command.fingerprints().forms
    assert "provenance" not in json.loads(stamped.model_dump_json())


def test_revalidation_keeps_the_stamp() -> None:
    stamped = RegisterUser(user_id="bob").stamped("stripe", "evt_1")
    assert validate_command(stamped).provenance == Provenance("stripe", "evt_1")


@pytest.mark.parametrize(
    ("source", "correlation_id", "field"),
    [
        ("ftp", None, "source"),
        ("CLI", None, "source"),
        ("http", "", "correlation_id"),
        ("http", "a\nb", "correlation_id"),
        ("http", "\x1b[31m", "correlation_id"),
        ("http", "x" * (MAX_CORRELATION_ID + 1), "correlation_id"),
    ],
)
def test_a_bad_stamp_is_refused_naming_its_field(
    source: str, correlation_id: str | None, field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        RegisterUser(user_id="bob").stamped(source, correlation_id)
    assert caught.value.field == field


@given(name=st.text(max_size=400), line=st.integers(min_value=1, max_value=10**9))
def test_every_line_id_is_a_valid_correlation_id(name: str, line: int) -> None:
    value = line_id(name, line)
    assert value.endswith(f":{line}")
    assert Provenance("cli", value).correlation_id == value


def test_line_ids_name_the_file_and_line() -> None:
    assert line_id("file.jsonl", 42) == "file.jsonl:42"
    assert line_id("-", 3) == "-:3"
