"""A money command's idempotency key: checked against every command that used it, and
claimed in the log once the command records events.

A key is one namespace across the ledger (CONTRACT.md, "Idempotency"), but since issue 26
a heartbeat's key is kept by the playback store (``playback_keys``), not the log. The
heartbeat path already asks the log for a money command's key (``ledger.playback``); this
is the other direction: a key only the store holds is a heartbeat's, and a money command
sent with it is a ``conflict`` (different command types never carry the same payload).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from ledger.commands.base import Command
from ledger.domain import ids
from ledger.domain.aggregates import CommandKey
from ledger.domain.errors import Conflict, Duplicate, Rejected
from ledger.service.unit_of_work import UnitOfWork

FIELD = "idempotency_key"
HEARTBEAT = "playback.progress"

StoreKeys = Callable[[Collection[str]], dict[str, str]]
"""The playback store's keys among those asked (key to fingerprint): ``keys_of``."""


def warm(uow: UnitOfWork, store_keys: StoreKeys, commands: Sequence[Command]) -> None:
    """Reads the store's keys of a group's (or an atomic batch's) commands in one query,
    so that deciding them asks the store no more (as ``pseudonyms.warm`` does for subjects)."""
    wanted = {c.idempotency_key for c in commands if c.idempotency_key is not None}
    wanted -= uow.store_keys.keys()
    if wanted:
        found = store_keys(wanted)
        uow.store_keys.update({k: found.get(k) for k in wanted})


def check(uow: UnitOfWork, store_keys: StoreKeys, command: Command, forms: frozenset[str]) -> None:
    """Raises ``Duplicate`` (the same command again) or ``Rejected`` (``conflict``: the key
    used by a different command, a heartbeat's included); returns when the key is new."""
    key = command.idempotency_key
    if key is None:
        return
    claim = uow.get(ids.command_key_id(FIELD, key), CommandKey)
    if claim is not None:
        claim.check_same(forms, FIELD)
        raise Duplicate
    if key not in uow.store_keys:  # a command decided alone: one read of its one key
        uow.store_keys[key] = store_keys([key]).get(key)
    if uow.store_keys[key] is not None:
        raise Conflict(
            f"{FIELD} {key!r} was already used by a different {HEARTBEAT} command",
            FIELD,
        )


def claim(uow: UnitOfWork, command: Command, canonical: str, occurred: str) -> None:
    """Records the key's claim in the log, in the command's own append."""
    if command.idempotency_key is not None:
        uow.record(
            CommandKey.claim(
                FIELD, command.idempotency_key, getattr(command, "type", ""), canonical, occurred
            )
        )


def shared(commands: Sequence[object], heartbeat: type) -> dict[int, Rejected]:
    """In one ``--atomic`` batch, a key both a heartbeat and a money command carry: the
    later of the two is a ``conflict`` (its index to its rejection). The heartbeats are
    recorded after the money commands commit, so neither would see the other's key."""
    first: dict[str, tuple[bool, str]] = {}  # key: (a heartbeat's?, its command type)
    found: dict[int, Rejected] = {}
    for index, command in enumerate(commands):
        key = getattr(command, "idempotency_key", None)
        if not isinstance(command, Command) or key is None:
            continue
        is_heartbeat = isinstance(command, heartbeat)
        kind = HEARTBEAT if is_heartbeat else getattr(command, "type", "")
        if key not in first:
            first[key] = (is_heartbeat, kind)
        elif first[key][0] != is_heartbeat:
            found[index] = Conflict(
                f"{FIELD} {key!r} was already used by a different {first[key][1]} command",
                FIELD,
            )
    return found
