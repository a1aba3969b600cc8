"""A caller's wake-up in the group commit (``group_commit._Wake``, a bare lock where a
``threading.Event`` was): set once or twice (the lead handed to a caller, then its own group
answered), waited for once, and a waiter blocked until it is set. The committer alone, its
group a recording function: the database's side is tested with the store and the ledger
(test_group_commit.py, test_playback_store.py)."""

from __future__ import annotations

import sys
import threading

from ledger.commands.results import Result
from ledger.config import Settings
from ledger.service.group_commit import GroupCommitter, _Wake
from tests.gated_groups import Gated, wait_for


def blocked_in_wait(thread: threading.Thread) -> bool:
    """The thread is blocked in ``_Wake.wait`` (its innermost frame)."""
    frame = sys._current_frames().get(thread.ident or 0)
    return frame is not None and frame.f_code.co_name == "wait"


def test_a_wake_set_twice_is_set_once_and_its_wait_returns() -> None:
    wake = _Wake()
    wake.set()
    wake.set()  # the lead, then the answer: no error, nothing released twice
    wake.wait()
    assert wake._set


def test_a_waiter_is_blocked_until_its_wake_is_set() -> None:
    wake = _Wake()
    returned = threading.Event()

    def waiter() -> None:
        wake.wait()
        returned.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_for(lambda: blocked_in_wait(thread))
    assert not returned.is_set()
    wake.set()
    thread.join(30)
    assert returned.is_set() and not thread.is_alive()


def test_a_follower_handed_the_lead_is_then_answered_in_its_own_group() -> None:
    """B and a list [c1, c2] queue behind A's group: B is handed the lead (its wake set),
    leads a group holding itself and the list, and is answered by it (its wake set again);
    every caller gets its own answer, in order, once."""
    gated = Gated()
    committer = GroupCommitter(gated, Settings("postgresql://localhost/ledger"), size=len)
    answers: dict[str, object] = {}

    def call(name: str, items: list[str]) -> None:
        answers[name] = committer.append_all(items)

    a = threading.Thread(target=call, args=("a", ["a"]))
    a.start()
    assert gated.started.wait(30)
    b = threading.Thread(target=call, args=("b", ["b"]))
    b.start()
    wait_for(lambda: committer.waiting == 1 and blocked_in_wait(b))
    c = threading.Thread(target=call, args=("c", ["c1", "c2"]))
    c.start()
    wait_for(lambda: committer.waiting == 3 and blocked_in_wait(c))
    gated.gate.set()
    for thread in (a, b, c):
        thread.join(30)
        assert not thread.is_alive()
    assert gated.groups == [["a"], ["b", "c1", "c2"]]
    assert answers == {
        "a": [Result("accepted", position=100)],
        "b": [Result("accepted", position=200)],
        "c": [Result("accepted", position=201), Result("accepted", position=202)],
    }
    assert committer.waiting == 0
    committer.close()
