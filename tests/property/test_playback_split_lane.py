"""Two groups in flight within one lane (``LEDGER_PLAYBACK_IN_FLIGHT=2``), on PostgreSQL:
for any heartbeats of two viewers, some sharing idempotency keys, sent and sent again by
four callers in any interleaving (two callers a part, so two groups are in flight at once),
no (user, content) pair and no key is ever in two groups in flight at once, each heartbeat
is applied at most once (every other send of it is ``duplicate``), one heartbeat a key is
accepted, the newest ``occurred_at`` of a pair's accepted heartbeats is on its row, and
everything sent again afterwards gets the answer of one group at a time."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ledger import api
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.playback.decide import Heartbeat
from ledger.service.lanes import Lanes
from tests.support import catalogue, grant, play, t

VIEWERS = ["alice", "bob"]


@st.composite
def sends(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Distinct heartbeats (each its own position and minute, some with one of two keys),
    and four callers' sends of them by index (resends within and across callers)."""
    count = draw(st.integers(min_value=2, max_value=8))
    minutes = draw(st.permutations(range(count)))
    beats = []
    for n in range(count):
        line = play(draw(st.sampled_from(VIEWERS)), n + 1, at=t(5, 12, minutes[n]))
        key = draw(st.sampled_from([None, None, "A", "B"]))
        if key is not None:
            line["idempotency_key"] = key
        beats.append(line)
    callers = draw(
        st.lists(
            st.lists(st.integers(min_value=0, max_value=count - 1), min_size=1, max_size=5),
            min_size=4,
            max_size=4,
        )
    )
    return beats, callers


class Watched:
    """The store's ``record`` with the groups in flight watched: a pair or a key found in
    two at once is recorded (the property's first rule)."""

    def __init__(self, record: Callable[[Sequence[Heartbeat]], list[Result]]) -> None:
        self._record = record
        self._lock = threading.Lock()
        self._in_flight: list[set[tuple[str, ...]]] = []
        self.overlaps: list[set[tuple[str, ...]]] = []
        self.most = 0

    def __call__(self, group: Sequence[Heartbeat]) -> list[Result]:
        claims = {("pair", h.user_id, h.content_id) for h in group}
        claims |= {("key", h.key) for h in group if h.key is not None}
        with self._lock:
            for other in self._in_flight:
                if other & claims:
                    self.overlaps.append(other & claims)
            self._in_flight.append(claims)
            self.most = max(self.most, len(self._in_flight))
        try:
            return self._record(group)
        finally:
            with self._lock:
                self._in_flight.remove(claims)


@settings(max_examples=25, deadline=None)
@given(sends())
def test_two_groups_in_flight_keep_the_rules_of_one_group_at_a_time(
    fresh: Callable[[], Settings], drawn: tuple[list[dict[str, Any]], list[list[int]]]
) -> None:
    beats, callers = drawn
    config = replace(fresh(), playback_in_flight=2)
    lines = [json.dumps(b) for b in beats]
    answers: list[list[tuple[int, str]]] = [[] for _ in callers]
    with api.open_ledger(config) as app:
        setup = [json.dumps(c) for c in [*catalogue(), *(grant(v) for v in VIEWERS)]]
        assert all(r.status == "accepted" for _, r in api.append_lines(app, setup))
        app.groups.close()  # the same lanes, the store's record watched
        watched = Watched(app.playback.record)
        app.groups = Lanes(app.execute_group, watched, config)
        start = threading.Barrier(len(callers), timeout=30)

        def caller(n: int) -> None:
            start.wait()
            for index in callers[n]:
                answers[n].append((index, api.append(app, parse_command(lines[index])).status))

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(len(callers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        again = [api.append(app, parse_command(line)).status for line in lines]
        with connect(config, autocommit=True) as conn:
            rows = dict(
                conn.execute("SELECT user_id, position_seconds FROM video_playback").fetchall()
            )
    event(f"groups in flight at once: {watched.most}")

    assert not watched.overlaps
    got: dict[int, list[str]] = {}
    for each in answers:
        for index, status in each:
            got.setdefault(index, []).append(status)
    accepted = {i for i, statuses in got.items() if "accepted" in statuses}
    never = [i for i in range(len(beats)) if i not in got]  # sent only at the end
    late = {i for i in never if again[i] == "accepted"}
    for i, statuses in got.items():
        if i in accepted:  # applied once; every other send of it is a duplicate
            assert sorted(statuses) == ["accepted"] + ["duplicate"] * (len(statuses) - 1)
            assert again[i] == "duplicate"
        else:  # only a heartbeat whose key another heartbeat took is refused
            key = beats[i].get("idempotency_key")
            assert key is not None and set(statuses) == {"rejected"}, (i, statuses)
            assert any(beats[j].get("idempotency_key") == key for j in accepted)
            assert again[i] == "rejected"
    applied = accepted | late
    for key in ("A", "B"):  # one heartbeat a key
        assert len([i for i in applied if beats[i].get("idempotency_key") == key]) <= 1
    for i in never:  # refused only for a key another heartbeat took
        key = beats[i].get("idempotency_key")
        assert i in late or (key is not None and again[i] == "rejected")
    for viewer in VIEWERS:  # the newest occurred_at of the pair's accepted heartbeats
        mine = [i for i in applied if beats[i]["user_id"] == viewer]
        if mine:
            newest = max(mine, key=lambda i: beats[i]["occurred_at"])
            assert rows[viewer] == beats[newest]["position_seconds"]
        else:
            assert viewer not in rows
