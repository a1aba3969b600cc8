"""A heartbeat's identity and fingerprint, computed once on the store's path
(``Heartbeat.of``), are exactly what the command computes alone: what the log recorded for
a heartbeat or key before the store, and what the store recorded since, keep recognising
their redeliveries."""

from __future__ import annotations

from datetime import UTC

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ledger.commands.access import RecordPlayback
from ledger.commands.parsing import parse_command
from ledger.domain import clock
from ledger.playback.decide import Heartbeat

NOW = "2026-12-04T22:30:00.000000+00:00"


@given(
    user=st.text(alphabet='abcXYZ019_-.@é漢"\\', min_size=1, max_size=20),
    position=st.integers(min_value=0, max_value=10_000),
    duration=st.integers(min_value=1, max_value=10_000),
    at=st.none() | st.sampled_from(["2026-01-02T12:00:00+00:00", "2026-01-02T13:00:00.5+02:00"]),
    key=st.none() | st.sampled_from(["hb-1", "hb-2"]),
)
def test_heartbeat_of_agrees_with_the_command(
    user: str, position: int, duration: int, at: str | None, key: str | None
) -> None:
    line: dict[str, object] = {
        "type": "playback.progress",
        "user_id": user,
        "content_id": "33333333-3333-4333-8333-333333333333",
        "position_seconds": min(position, duration),
        "duration_seconds": duration,
    }
    if at is not None:
        line["occurred_at"] = at
    if key is not None or at is None:  # a heartbeat needs one of them
        line["idempotency_key"] = key or "hb-0"
    command = parse_command(orjson.dumps(line))
    assert isinstance(command, RecordPlayback)
    heartbeat = Heartbeat.of(command, NOW)
    occurred = command.occurred(NOW)
    assert heartbeat.identity == command.identity(occurred)
    assert heartbeat.fingerprint == command.fingerprints().canonical == command.fingerprint()
    assert heartbeat.content_id == str(command.content_id)
    # its moment, made once beside its text, is what parsing the text gives back
    assert heartbeat.occurred_at == clock.parse(occurred)
    assert heartbeat.occurred_at.tzinfo is UTC
    assert clock.canonical(heartbeat.occurred_at) == occurred
    if at is None:  # read from the clock: its identity hashes the moment it holds
        now = Heartbeat.now(command)
        assert now.occurred_at.tzinfo is UTC
        assert now.identity == command.identity(clock.canonical(now.occurred_at))
        assert now.fingerprint == heartbeat.fingerprint


# Recorded by main's code (``Command.fingerprint`` through pydantic's dump, 2026-12-05),
# before ``Heartbeat.of`` wrote the payload out itself: the bytes hashed must never change,
# or the store and the log would stop recognising the redeliveries of what they hold.
RECORDED = [
    (
        {
            "user_id": 'u-é漢"1',
            "position_seconds": 95,
            "duration_seconds": 100,
            "occurred_at": "2026-01-02T13:00:00.5+02:00",
        },
        "884f5719bdeb0f080baec7dec59fd83736adbb8f60eaf7a1b12f4f7a74b59807",
        "3f2e6ad49b147be21d4180af3f14cbb700a108e61fd8505be6a9799e1b898555",
    ),
    (
        {
            "user_id": "alice",
            "position_seconds": 0,
            "duration_seconds": 1,
            "idempotency_key": "hb-0",
        },
        "7e1f38a3690ce416aae675f0cb32bd8b0a1a83c75396528cdc4c6bfe3a865fe5",
        "0aca1eb032ec1fafa3b473761aa49edeaa1ebf5d7429788bf98bf26a973e0742",
    ),
]


def test_heartbeat_of_gives_the_recorded_digests() -> None:
    for fields, fingerprint, identity in RECORDED:
        line = {
            "type": "playback.progress",
            "content_id": "33333333-3333-4333-8333-333333333333",
            **fields,
        }
        command = parse_command(orjson.dumps(line))
        assert isinstance(command, RecordPlayback)
        heartbeat = Heartbeat.of(command, NOW)
        assert (heartbeat.fingerprint, heartbeat.identity) == (fingerprint, identity)
