"""The aggregates' topics: what the log stores of each aggregate's class.

A short, fixed name per class (``Organization``, not ``ledger.domain.catalogue:
Organization``), registered where the class is defined, so that moving a class to
another module never changes what is stored, nor what a stored log resolves to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from eventsourcing.domain import Aggregate
from eventsourcing.utils import register_topic

A = TypeVar("A", bound=type[Aggregate])


def topic(name: str) -> Callable[[A], A]:
    """Registers the decorated aggregate class under ``name``."""

    def register(cls: A) -> A:
        cls.TOPIC = name  # type: ignore[attr-defined]
        register_topic(name, cls)
        return cls

    return register
