"""Each stored version of an event, turned into the current class (docs/events.md,
"Changing an event").

The log is never rewritten: an event keeps the bytes it was stored with, and so the
hash chain keeps holding. A reader turns what it reads into the current class instead:
each topic has a chain of steps, version N to N+1, applied in order from the version an
event was stored with (``class_version`` in its state; absent means 1, as the
``eventsourcing`` library writes it) to the topic's current version.

Every reader of the log goes through this one chain: the library's mapper (aggregates)
calls the ``upcast_vN_vN+1`` methods ``install`` gives each event class, and the
readers that decode without the mapper (rebuilds, verify, the stream, export) call
``upcast`` through ``ledger.log.shapes.check``. The SQL audits read a few named
fields of the stored JSON; a field a step adds has its SQL form beside the step (the
revenue audit reads ``source`` as ``coalesce(source, 'unknown')``).

A step changes the state dict in place (the library's convention) and only ever adds
what the later version carries, with the value that says what the earlier one meant.
It declares the fields it adds, so the catalogue can state each earlier version's shape
(``ledger.log.shapes.versions``) and the database accept it for history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.domain.provenance import UNRECORDED

State = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One version to the next: ``apply`` changes a state of version ``to - 1`` into one
    of version ``to``; ``adds`` names the fields the later version has and the earlier
    lacks."""

    to: int
    adds: tuple[str, ...]
    apply: Callable[[State], None]


class UnknownVersion(ValueError):
    """A state's ``class_version`` is not one this code can read (not a whole number, or
    newer than the topic's current version: a log written by a later version)."""


def _add_provenance(state: State) -> None:
    """Version 2 records where each event came from. An event stored before that did
    not record it: its source reads as ``unknown``, with no correlation id and no
    idempotency key (which of its command's events carried one is not recorded either)."""
    state.setdefault("source", UNRECORDED)
    state.setdefault("correlation_id", None)
    state.setdefault("idempotency_key", None)


PROVENANCE = Step(2, ("source", "correlation_id", "idempotency_key"), _add_provenance)


def _add_processor_time(state: State) -> None:
    """Version 3 of a completion, failure or refund keeps the payment processor's own time
    beside the business time it took (``Purchase.effective_time``). An earlier event was
    never lifted: its ``occurred_at`` is its own, and no processor time was kept."""
    state.setdefault("processor_occurred_at", None)


PROCESSOR_TIME = Step(3, ("processor_occurred_at",), _add_processor_time)


def _add_revoked_organization(state: State) -> None:
    """Version 3 of a revocation names the organization of the access it removes, so that
    on a distributed log its row's deletion goes to that organization's shard alone (issue
    28, docs/scaling.md "A revocation on facts"). An earlier event never recorded it, and
    cannot learn it from itself: ``None``, and the projection deletes its row by (user,
    content), as it was written (only a rebuild replays such an event)."""
    state.setdefault("organization_id", None)


REVOKED_ORGANIZATION = Step(3, ("organization_id",), _add_revoked_organization)

_CHAINS: dict[str, tuple[Step, ...]] = {}  # filled by ``install``


def chain(topic: str) -> tuple[Step, ...]:
    """The steps from version 1 of ``topic`` to its current version, in order."""
    return _CHAINS[topic]


def current_version(topic: str) -> int:
    steps = _CHAINS[topic]
    return steps[-1].to if steps else 1


def stored_version(state: Mapping[str, Any]) -> int:
    """The version a stored state was written with; ``UnknownVersion`` if it is not one."""
    version = state.get("class_version", 1)
    if type(version) is float and version.is_integer():
        version = int(version)  # jsonb (the insert trigger) takes 2.0 as 2
    if type(version) is not int or version < 1:
        raise UnknownVersion(f"its class_version {version!r} is not a version number")
    return version


def upcast(topic: str, state: State) -> State:
    """``state`` (a stored event's JSON, changed in place) as the current version of
    ``topic``, without its ``class_version``."""
    version = stored_version(state)
    state.pop("class_version", None)
    steps = _CHAINS[topic]
    current = steps[-1].to if steps else 1
    if version > current:
        raise UnknownVersion(
            f"its version {version} is newer than this code's ({current}): "
            "a later version of the ledger wrote it"
        )
    for step in steps:
        if step.to > version:
            step.apply(state)
    return state


def install(classes: Mapping[str, type], chains: Mapping[str, tuple[Step, ...]]) -> None:
    """Records each topic's chain, and gives its class the current ``class_version``
    and the library's ``upcast_vN_vN+1`` methods, so the library's mapper upcasts by
    the same steps as every other reader."""
    for topic, cls in classes.items():
        steps = chains[topic]
        if [s.to for s in steps] != list(range(2, len(steps) + 2)):
            raise ValueError(f"{topic}: the steps must go from version 1 up, one at a time")
        _CHAINS[topic] = steps
        cls.class_version = current_version(topic)  # type: ignore[attr-defined]
        for step in steps:
            setattr(cls, f"upcast_v{step.to - 1}_v{step.to}", staticmethod(step.apply))
