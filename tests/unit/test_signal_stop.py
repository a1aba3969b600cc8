"""``SignalStop``: the stop flag ``ledger events`` sets from its SIGINT/SIGTERM handler.

``threading.Event.set`` in a signal handler can wait for ever on the lock that the
interrupted ``Event.wait`` holds (``ledger events --follow`` once hung on SIGTERM so);
``SignalStop.set`` takes no lock, and a signal during ``wait`` wakes it."""

from __future__ import annotations

import signal
import time
from types import FrameType

from ledger.cli.signals import SignalStop


def test_a_signal_during_the_wait_sets_it_and_wakes_it_at_once() -> None:
    for delay in (0.0005, 0.001, 0.002, 0.005, 0.02) * 20:
        stop = SignalStop()

        def handler(signum: int, frame: FrameType | None, stop: SignalStop = stop) -> None:
            stop.set()

        previous = signal.signal(signal.SIGALRM, handler)
        try:
            signal.setitimer(signal.ITIMER_REAL, delay)
            started = time.monotonic()
            while not stop.wait(30):  # woken by the handler's write, not the timeout
                pass
            assert stop.is_set()
            assert time.monotonic() - started < 30, "not woken"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            stop.close()


def test_set_twice_and_waits_after_it_return_at_once() -> None:
    stop = SignalStop()
    assert not stop.is_set() and stop.wait(0.001) is False
    stop.set()
    stop.set()
    assert stop.wait(None) and stop.wait(0) and stop.is_set()
    stop.close()
