"""A heartbeat's identity and fingerprint, computed once on the store's path
(``Heartbeat.of``), are exactly what the command computes alone: what the log recorded for
a heartbeat or key before the store, and what the store recorded since, keep recognising
their redeliveries."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ledger.commands.access import RecordPlayback
from ledger.commands.parsing import parse_command
from ledger.playback.decide import Heartbeat

NOW = "2026-12-04T22:30:00.000000+00:00"


@given(
    user=st.text(alphabet="abcXYZ019_-.@", min_size=1, max_size=20),
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
    assert heartbeat.fingerprint == command.fingerprints().canonical
    assert heartbeat.content_id == str(command.content_id)
