"""Two groups in flight within one playback lane (``ledger.service.in_flight``,
``LEDGER_PLAYBACK_IN_FLIGHT``): a caller stays in its part, two parts' groups are in flight
at once, and a group holding a (user, content) pair or a key of the group in flight waits
until that one has landed. The lane alone, its group a recording function: the database's
side is tests/integration/test_playback_split_lane.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import replace

from ledger.commands.access import RecordPlayback
from ledger.commands.parsing import parse_command
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.domain import clock
from ledger.playback.decide import Heartbeat
from ledger.service.in_flight import SplitLane
from ledger.service.lanes import Lanes
from tests.gated_groups import wait_for
from tests.support import play, t
from tests.unit.test_group_wake import blocked_in_wait

SETTINGS = Settings("postgresql://unused")


def _beat(user: str, second: int, key: str | None = None) -> Heartbeat:
    line = play(user, second, at=t(5))
    if key is not None:
        line["idempotency_key"] = key
    command = parse_command(json.dumps(line))
    assert isinstance(command, RecordPlayback)
    return Heartbeat.of(command, clock.now())


def _accept(group: Sequence[Heartbeat]) -> list[Result]:
    return [Result("accepted", position=1) for _ in group]


def test_the_setting_makes_a_split_lane_and_one_is_the_plain_committer() -> None:
    split = Lanes(lambda cs: [], _accept, replace(SETTINGS, playback_in_flight=2))
    plain = Lanes(lambda cs: [], _accept, SETTINGS)
    assert isinstance(split.playback[0], SplitLane) and len(split.playback[0].parts) == 2
    assert not isinstance(plain.playback[0], SplitLane)
    assert split.append(parse_command(json.dumps(play("alice", 1, at=t(5))))).status == "accepted"
    split.close()
    plain.close()


def test_a_caller_stays_in_its_part_and_callers_are_split_between_the_parts() -> None:
    lane = SplitLane(_accept, SETTINGS, 2)
    parts: dict[int, set[int]] = {}

    def caller(n: int) -> None:
        for second in range(5):
            assert lane.append(_beat(f"viewer-{n}", second)).status == "accepted"
            parts.setdefault(n, set()).add(id(lane._part()))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    lane.close()
    assert all(len(each) == 1 for each in parts.values())  # each caller in one part only
    used = [next(iter(each)) for each in parts.values()]
    assert sorted(used.count(id(p)) for p in lane.parts) == [2, 2]  # two callers a part


def test_two_parts_groups_of_different_pairs_are_in_flight_at_once() -> None:
    both = threading.Barrier(2, timeout=30)  # broken (an error) if the groups run one by one

    def execute(group: Sequence[Heartbeat]) -> list[Result]:
        both.wait()
        return _accept(group)

    lane = SplitLane(execute, SETTINGS, 2)
    answers: list[str] = []
    threads = [
        threading.Thread(target=lambda n=n: answers.append(lane.append(_beat(n, 1)).status))
        for n in ("alice", "bob")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    lane.close()
    assert answers == ["accepted", "accepted"]


def _held_first(second: Heartbeat) -> tuple[list[str], bool]:
    """alice's heartbeat at second 1 in flight in one part (held until the test lets it
    go), ``second`` sent from the other part: the order the groups ran in, and whether the
    second one was blocked waiting for the first to land."""
    release = threading.Event()
    first_in = threading.Event()
    ran: list[str] = []

    def execute(group: Sequence[Heartbeat]) -> list[Result]:
        ran.append(f"{group[0].user_id}:{group[0].command.position_seconds}:start")
        if group[0].command.position_seconds == 1:
            first_in.set()
            assert release.wait(30)
        ran.append(f"{group[0].user_id}:{group[0].command.position_seconds}:end")
        return _accept(group)

    lane = SplitLane(execute, SETTINGS, 2)
    one = threading.Thread(target=lane.append, args=(_beat("alice", 1, key="k1"),))
    one.start()
    assert first_in.wait(30)
    two = threading.Thread(target=lane.append, args=(second,))  # a new thread: the other part
    two.start()
    blocked = False
    if second.user_id == "alice" or second.key == "k1":
        wait_for(lambda: blocked_in_wait(two))  # waiting for the group in flight to land
        blocked = len(ran) == 1  # and not run meanwhile
    else:
        wait_for(lambda: len(ran) == 3)  # ran beside the one held
    release.set()
    one.join(30)
    two.join(30)
    lane.close()
    return ran, blocked


def test_a_heartbeat_whose_pair_is_in_flight_waits_for_that_group_to_land() -> None:
    ran, blocked = _held_first(_beat("alice", 2))
    assert blocked
    assert ran == ["alice:1:start", "alice:1:end", "alice:2:start", "alice:2:end"]


def test_a_heartbeat_whose_key_is_in_flight_waits_for_that_group_to_land() -> None:
    ran, blocked = _held_first(_beat("bob", 2, key="k1"))
    assert blocked
    assert ran == ["alice:1:start", "alice:1:end", "bob:2:start", "bob:2:end"]


def test_a_heartbeat_of_another_pair_and_key_does_not_wait() -> None:
    ran, blocked = _held_first(_beat("bob", 2, key="k2"))
    assert not blocked
    assert ran[:3] == ["alice:1:start", "bob:2:start", "bob:2:end"]
    assert ran[3] == "alice:1:end"
