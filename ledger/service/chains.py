"""The chain each of a command's events goes to (``ledger.log.chains``, migration 0014).

Decided after the command, from what the decision knew (the aggregates it loaded: nothing
more is read, and no guard is added), so it is exact, unlike the group commit's guess
before it (``ledger.service.partition``): the organization the command
names, else the one an event of it names, else the one of the content or purchase it
acts on. A user's registration, deletion or erasure belongs to no organization: the
platform's chain. All of a command's events go to one chain: no rule spans two.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from ledger.commands.base import Command
from ledger.commands.catalogue import DeleteUser, EraseUser, RegisterUser
from ledger.domain import events as ev
from ledger.domain import ids
from ledger.domain.catalogue import Content
from ledger.domain.purchase import Purchase
from ledger.log.chains import PLATFORM, Route
from ledger.service.cache import AggregateCache
from ledger.service.group_commit import GLOBAL
from ledger.service.partition import by_organization
from ledger.service.unit_of_work import UnitOfWork
from projections.changes import Delete, RowChange
from projections.registry import changes_for

_PLATFORM_COMMANDS = (RegisterUser, DeleteUser, EraseUser)


def chain_of(uow: UnitOfWork, command: Command, events: Sequence[Any]) -> UUID:
    """The organization whose chain the command's events extend (``PLATFORM``: none)."""
    if isinstance(command, _PLATFORM_COMMANDS):
        return PLATFORM
    named = getattr(command, "organization_id", None)
    if named is not None:
        return UUID(str(named))
    for event in events:
        found = getattr(event, "organization_id", None)
        if found:
            return UUID(str(found))
    content = getattr(command, "content_id", None)
    if content is not None:
        known = uow.loaded.get(ids.content_id(str(content)))
        if isinstance(known, Content):
            return UUID(known.organization_id)
    intent = getattr(command, "stripe_payment_intent_id", None)
    if isinstance(intent, str):
        purchase = uow.loaded.get(ids.purchase_id(intent))
        if isinstance(purchase, Purchase) and purchase.organization_id:
            return UUID(purchase.organization_id)
    return PLATFORM


def route(
    aggregates: AggregateCache, commands: Sequence[Command], *, platform: bool = True
) -> Route | None:
    """Where a distributed log is to read these commands' aggregates: their organizations'
    chains and the platform's, and wherever the claims of what they name by a global key
    say (``ledger.log.chains.Route``). The organizations are the group commit partition's
    guess (``ledger.service.partition``), never a read; one not known from the cache (a
    process just started) is found by the claims of its content, purchase or key, read in the
    same round trip. ``None``, every chain: a command of the whole platform (a user's
    registration or deletion), or one that names neither an organization nor a key.
    ``platform=False``: without the platform's chain, for a decision that takes its people
    as facts (``ledger.service.facts``) and reads nothing else of that chain."""
    named = {by_organization(aggregates)(c) for c in commands}
    keyed = frozenset(i for c in commands for i in _keyed(c))
    chains = {PLATFORM} if platform else set()
    for organization in named:
        if organization == GLOBAL:
            return None
        try:
            chains.add(UUID(organization))
        except ValueError:  # not known: found by its claims, if it names a key
            if not keyed:
                return None
    return Route(frozenset(chains), keyed)


def _keyed(command: Command) -> list[UUID]:
    """The aggregates a command names by a key global across organizations."""
    found: list[UUID] = []
    if command.idempotency_key is not None:
        found.append(ids.command_key_id("idempotency_key", command.idempotency_key))
    refund = getattr(command, "refund_id", None)
    if isinstance(refund, str):
        found.append(ids.command_key_id("refund_id", refund))
    intent = getattr(command, "stripe_payment_intent_id", None)
    if isinstance(intent, str):
        found.append(ids.purchase_id(intent))
    content = getattr(command, "content_id", None)
    if content is not None:
        found.append(ids.content_id(str(content)))
    return found


def assign(uow: UnitOfWork, command: Command, before: int) -> None:
    """Gives the command's events (those from ``before`` on) their chain."""
    chain = chain_of(uow, command, uow.events[before:])
    uow.chains[before:] = [chain] * (len(uow.events) - before)


def row_changes(uow: UnitOfWork) -> list[RowChange]:
    """The rows the unit of work's events change (``changes_for``): each revocation's guard
    (``facts.guard``, in ``uow.guards``) just before the changes of its event, and a
    content's deletion's matched by its chain's organization as well (``in_organization``)."""
    deleting = any(isinstance(event, ev.ContentDeleted) for event in uow.events)
    if not uow.guards and not deleting:
        return changes_for(uow.events)
    found: list[RowChange] = []
    for index, event in enumerate(uow.events):
        if index in uow.guards:
            found.append(uow.guards[index])
        changes = changes_for([event])
        if isinstance(event, ev.ContentDeleted):
            found.extend(in_organization(changes, uow.chains[index]))
        else:
            found.extend(changes)
    return found


def in_organization(changes: Iterable[RowChange], chain: UUID) -> Iterator[RowChange]:
    """A content's deletion's row deletions, matched by its organization as well.

    ``ContentDeleted`` names its content alone (old events cannot learn more), so its rows
    (``content``, ``content_access``, ``video_playback``) were deleted by content id, which
    on Citus is every shard of each table: every worker, so a stopped worker of other
    organizations failed the deletion. Its chain is its content's organization
    (``chain_of``), and every row of the content carries it (their keys (organization_id,
    content_id) reference ``content``): the same rows are deleted, by statements routed to
    the organization's shard. The platform's chain names no organization: left as it is.
    The projections map the event alone (a rebuild deletes by content id, as before)."""
    for change in changes:
        if isinstance(change, Delete) and chain != PLATFORM:
            yield replace(change, match={**change.match, "organization_id": str(chain)})
        else:
            yield change
