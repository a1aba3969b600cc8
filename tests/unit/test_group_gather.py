"""A playback lane's gathering (``GroupCommitter._gather``): the lead handed on at a commit
waits for the callers that commit answered, so callers in a loop share one group; a list
(one caller, as the HTTP feed sends) is never waited for by itself; nothing is lost, taken
twice or answered out of order. The committer alone, its group a recording function: the
database's side of a group is tested with the store (test_playback_store.py)."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest

from ledger.commands.results import Result
from ledger.config import Settings
from ledger.service import group_commit
from ledger.service.group_commit import GroupCommitter
from tests.gated_groups import Gated, wait_for


def committer(recorder: Gated) -> GroupCommitter[str]:
    settings = Settings("postgresql://localhost/ledger")
    return GroupCommitter(recorder, settings, size=len, gather=True)


@pytest.fixture
def long_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A window no caller's return can miss, however loaded the machine: the test is about
    who is gathered, not how long a lead waits."""
    monkeypatch.setattr(group_commit, "GATHER_FRACTION", 10_000.0)
    monkeypatch.setattr(group_commit, "GATHER_MAX", 60.0)


def gathering(thread: threading.Thread) -> bool:
    """The thread leads and waits in ``_gather`` for callers to come back."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "_gather":
            return True
        frame = frame.f_back
    return False


@pytest.mark.usefixtures("long_window")
def test_the_lead_handed_on_gathers_the_caller_the_last_group_answered() -> None:
    recorder = Gated()
    lane = committer(recorder)
    answers: list[Result] = []
    others: list[threading.Thread] = []
    failures: list[str] = []

    def looping() -> None:
        """Leads the first group (a0), then comes back with a1 only once the caller handed
        the lead is gathering: without the gathering a1 would go in a group of its own."""
        answers.append(lane.append("a0"))
        try:
            wait_for(lambda: any(gathering(t) for t in others), 60)
        except AssertionError:
            failures.append("nobody gathered")
        answers.append(lane.append("a1"))

    def once(name: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.append(lane.append(name)))
        thread.start()
        return thread

    a = threading.Thread(target=looping)
    a.start()
    assert recorder.started.wait(30)
    others += [once("b0"), once("c0")]
    wait_for(lambda: lane.waiting == 2)
    recorder.gate.set()
    for thread in (a, *others):
        thread.join(60)
        assert not thread.is_alive()
    assert failures == []
    # b, handed the lead when a0's group committed, waited for a1 instead of committing b0
    # and c0 without it
    assert recorder.groups == [["a0"], ["b0", "c0", "a1"]]
    assert [r.status for r in answers] == ["accepted"] * 4


@pytest.mark.usefixtures("long_window")
def test_a_list_is_one_caller_and_never_waits_for_itself() -> None:
    """The HTTP feed's case: one thread sends each hand-over as one list. Waiting for three
    callers after a group of three commands would hold its next list for the whole window
    (60 s here: the join below would see it still waiting)."""
    recorder = Gated()
    recorder.gate.set()
    lane = committer(recorder)
    first = lane.append_all(["x0", "x1", "x2"])
    second: list[Result | BaseException] = []
    thread = threading.Thread(target=lambda: second.extend(lane.append_all(["y0", "y1"])))
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the list waited for callers that were itself"
    assert recorder.groups == [["x0", "x1", "x2"], ["y0", "y1"]]
    assert all(isinstance(r, Result) and r.status == "accepted" for r in [*first, *second])


def test_callers_in_a_loop_lose_nothing_and_are_answered_once_each() -> None:
    """The window as shipped: callers that stop (the last round) cost it once, and every
    item is committed once, in its caller's order."""
    recorder = Gated()
    recorder.gate.set()
    lane = committer(recorder)
    answered: list[str] = []
    lock = threading.Lock()

    def run(name: str) -> None:
        for n in range(50):
            result = lane.append(f"{name}-{n}")
            assert result.status == "accepted"
            with lock:
                answered.append(f"{name}-{n}")

    threads = [threading.Thread(target=run, args=(f"t{k}",)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    lane.close()
    committed = [item for group in recorder.groups for item in group]
    assert sorted(committed) == sorted(answered)
    assert len(committed) == len(set(committed)) == 300
    for k in range(6):  # each caller's items committed in its order
        mine = [item for item in committed if item.startswith(f"t{k}-")]
        assert mine == [f"t{k}-{n}" for n in range(50)]


@pytest.mark.usefixtures("long_window")
def test_an_interrupt_while_gathering_hands_the_lead_on_and_writes_nothing_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C reaching the lead while it gathers (injected at its first reading of the clock,
    which is in ``_gather``, as test_group_commit injects one after the take): its command
    leaves the queue unwritten, the lead goes to the caller behind it, and every other
    command is committed once."""
    recorder = Gated()
    lane = committer(recorder)
    outcomes: dict[str, Result | BaseException] = {}
    victim: list[threading.Thread] = []
    clock = time.perf_counter

    def perf_counter() -> float:
        if victim and threading.current_thread() is victim[0]:
            victim.clear()
            raise KeyboardInterrupt("injected: an interrupt while gathering")
        return clock()

    monkeypatch.setattr(group_commit, "time", types.SimpleNamespace(perf_counter=perf_counter))

    def caller(name: str) -> threading.Thread:
        def run() -> None:
            try:
                outcomes[name] = lane.append(name)
            except BaseException as error:
                outcomes[name] = error

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    a = caller("a0")
    assert recorder.started.wait(30)
    b = caller("b0")
    victim.append(b)  # before the lead reaches it: it is queued behind a0's group
    wait_for(lambda: lane.waiting == 1)
    c = caller("c0")
    wait_for(lambda: lane.waiting == 2)
    recorder.gate.set()  # a0 commits; the lead goes to b0, which gathers and is interrupted
    for thread in (a, b, c):
        thread.join(60)
        assert not thread.is_alive(), f"a caller was left waiting: {outcomes}"
    later = caller("a1")
    later.join(60)
    assert not later.is_alive()
    assert isinstance(outcomes["b0"], KeyboardInterrupt)
    for name in ("a0", "c0", "a1"):
        answer = outcomes[name]
        assert isinstance(answer, Result) and answer.status == "accepted", outcomes
    committed = [item for group in recorder.groups for item in group]
    assert sorted(committed) == ["a0", "a1", "c0"]
