"""Which organization a command belongs to: the group commit's partition on a distributed
layout (``ledger.service.group_commit``, docs/scaling.md).

A guess from what the command names and the aggregates the ledger has cached, never a read
of the database: the partition only decides which commands share a transaction, never what
is decided (each command is decided on the state the log holds, as always). A command whose
organization is not known from it (content or purchase not cached yet) gets a partition of
its own: it commits alone, and holds up nobody. A user's registration or deletion is the
whole platform's (``GLOBAL``): it is never passed over.
"""

from __future__ import annotations

from ledger.commands.base import Command
from ledger.commands.catalogue import DeleteUser, RegisterUser
from ledger.domain import ids
from ledger.domain.catalogue import Content
from ledger.domain.purchase import Purchase
from ledger.service.cache import AggregateCache
from ledger.service.group_commit import GLOBAL, Partition


def by_organization(aggregates: AggregateCache) -> Partition:
    """A command's organization, as the group commit partitions the queue by it."""

    def partition(command: Command) -> str:
        if isinstance(command, (RegisterUser, DeleteUser)):
            return GLOBAL
        organization = getattr(command, "organization_id", None)
        if organization is not None:
            return str(organization)
        content = getattr(command, "content_id", None)
        if content is not None:
            found = aggregates.cached([ids.content_id(str(content))])
            known = next(iter(found.values()))
            if isinstance(known, Content):
                return known.organization_id
        intent = getattr(command, "stripe_payment_intent_id", None)
        if isinstance(intent, str):
            found = aggregates.cached([ids.purchase_id(intent)])
            purchase = next(iter(found.values()))
            if isinstance(purchase, Purchase) and purchase.organization_id:
                return purchase.organization_id
        return f"?{id(command)}"  # unknown: a group of its own

    return partition
