"""One registration per command type: its handler, the aggregates it reads, and the
values the ledger derives for its optional fields.

A handler module registers each of its handlers with ``@handles``; the application
finds everything about a command here, so adding a command touches the command, its
events, its aggregate method, its handler and its projection, and nothing else
(docs/architecture.md, "Adding a command").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from ledger.commands.base import Command, Fingerprint
from ledger.domain import ids
from ledger.service.unit_of_work import UnitOfWork

C = TypeVar("C", bound=Command)

Handler = Callable[[UnitOfWork, C, str, Fingerprint], None]
"""Decides a command: gets its aggregates from the unit of work, calls their methods
(which check their rules, then trigger events) and records them. Raises ``Duplicate``
or a ``Rejected`` before recording anything."""


@dataclass(frozen=True)
class Registration(Generic[C]):
    handler: Handler[C]
    needs: Callable[[C], list[UUID]]
    """The aggregates the decision reads, loaded in one query before it starts."""
    derived: Callable[[UnitOfWork, C], dict[str, Any]] | None = None
    """The values the ledger derives for the command's optional fields, as plain JSON
    values: given or not, they make the same command (the canonical fingerprint). Only
    state fixed before the command counts."""


REGISTRY: dict[type[Command], Registration[Any]] = {}


def handles(
    command_type: type[C],
    *,
    needs: Callable[[C], list[UUID]],
    derived: Callable[[UnitOfWork, C], dict[str, Any]] | None = None,
) -> Callable[[Handler[C]], Handler[C]]:
    """Registers the decorated function as the handler of ``command_type``."""

    def register(handler: Handler[C]) -> Handler[C]:
        if command_type in REGISTRY:
            raise TypeError(f"{command_type.__name__} has a handler already")
        REGISTRY[command_type] = Registration(handler, needs, derived)
        return handler

    return register


def registration(command: Command) -> Registration[Any]:
    return REGISTRY[type(command)]


def needed(command: Command) -> list[UUID]:
    """The aggregates a command's decision reads, its idempotency key's claim included."""
    found = registration(command).needs(command)
    if command.idempotency_key is not None:
        return [ids.command_key_id("idempotency_key", command.idempotency_key), *found]
    return found


def derived(uow: UnitOfWork, command: Command) -> dict[str, Any]:
    derive = registration(command).derived
    return derive(uow, command) if derive is not None else {}
