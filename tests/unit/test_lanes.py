"""Lanes (``ledger.service.lanes``): a list of many viewers' heartbeats (the HTTP service's
hand-over) goes to its playback lanes at once, each lane's share in its order, answered in
the list's order; money commands and heartbeats keep their runs' order."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from ledger.commands.base import Command
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.playback.decide import Heartbeat
from ledger.service.lanes import Lanes
from tests.support import grant, play, t


def _lanes(playback: object, money: object | None = None, lanes: int = 2) -> Lanes:
    settings = Settings(url="postgresql://unused", playback_lanes=lanes)
    return Lanes(money or (lambda cs: []), playback, settings)  # type: ignore[arg-type]


def _beats(count: int) -> list[Command]:
    return [parse_command(json.dumps(play(f"viewer-{n}", n, at=t(5)))) for n in range(count)]


def test_a_list_of_heartbeats_reaches_both_lanes_at_once_and_is_answered_in_order() -> None:
    both = threading.Barrier(2, timeout=30)  # broken (an error) if the lanes run one by one
    calls: list[list[str]] = []

    def playback(group: Sequence[Heartbeat]) -> list[Result]:
        calls.append([h.user_id for h in group])
        both.wait()
        return [Result("accepted", position=int(h.user_id.split("-")[1])) for h in group]

    lanes = _lanes(playback)
    beats = _beats(16)
    answers = lanes.append_all(beats)
    lanes.close()
    assert [a.position for a in answers if isinstance(a, Result)] == list(range(16))
    assert len(calls) == 2 and sorted(u for share in calls for u in share) == sorted(
        f"viewer-{n}" for n in range(16)
    )
    for share in calls:  # each lane's share in the list's order
        assert share == sorted(share, key=lambda u: int(u.split("-")[1]))


def test_a_grant_before_heartbeats_is_answered_before_they_are_queued() -> None:
    order: list[str] = []

    def money(commands: Sequence[Command]) -> list[Result]:
        order.append("money")
        return [Result("accepted", position=0) for _ in commands]

    def playback(group: Sequence[Heartbeat]) -> list[Result]:
        order.append("playback")
        return [Result("accepted", position=1) for _ in group]

    lanes = _lanes(playback, money)
    first = parse_command(json.dumps(grant("viewer-0")))
    answers = lanes.append_all([first, *_beats(8)])
    lanes.close()
    assert order[0] == "money" and set(order[1:]) == {"playback"}
    assert [a.position for a in answers if isinstance(a, Result)] == [0] + [1] * 8
