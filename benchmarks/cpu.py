"""CPU seconds of processes, to the nanosecond where Linux tells it.

``psutil``'s times come from ``/proc/<pid>/stat`` in clock ticks of 10 ms, each process's
share rounded down to whole ticks. A smoke run's 80 heartbeats cost PostgreSQL about 6 ms in
all, spread over a dozen backends, so their sum could read 0 (it did, once, in CI).
``/proc/<pid>/task/<tid>/schedstat`` counts each thread's time on a CPU in nanoseconds; it is
read where it exists, and the ticks only where it does not.

The readings are keyed by thread: a thread that starts between two readings counts whole, one
that ends between them is lost. The processes measured keep their threads for a run (a
PostgreSQL backend is one thread; the service's loop, group-commit and executor threads live
as long as it does).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

PRECISE = os.path.exists("/proc/self/schedstat")


def _threads(pid: int) -> dict[int, float]:
    """Each live thread of ``pid`` and its CPU seconds."""
    folder = f"/proc/{pid}/task"
    try:
        tids = os.listdir(folder)
    except OSError:
        return {}  # the process ended
    used: dict[int, float] = {}
    for tid in tids:
        try:
            with open(f"{folder}/{tid}/schedstat") as stats:
                used[int(tid)] = int(stats.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # the thread ended while being read
    return used


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds so far of every thread of ``pids`` (or of each process, in ticks)."""
    used: dict[int, float] = {}
    for pid in pids:
        if PRECISE:
            used.update(_threads(pid))
            continue
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        used[pid] = times.user + times.system
    return used


def used_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings of ``cpu_seconds``, never negative."""
    return sum(max(0.0, spent - before.get(key, 0.0)) for key, spent in after.items())
