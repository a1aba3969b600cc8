"""A person named by a command as a fact of ``users``, on the distributed log (issue 28).

On Citus a person's ``User`` aggregate lives in the platform's chain, on one worker. A
command that read it, and checked its version again at append, touched that worker
whatever its organization, so a stopped platform worker stopped every organization's
purchases, grants, revocations and publications. What these commands need of the person
they name is one fact, registered and not deleted, and ``users`` holds it, with a copy on
every node (``ledger.log.people``). So there their decisions (``ON_FACTS``) read their
people from ``users`` and ``ledger_subjects`` in one statement on the coordinator, and
neither read nor check their ``User`` aggregates: the read and the append's check touch the
organization's worker alone (and the keys' claims').

What orders such a command with a user's deletion is no longer the aggregate's version but
a row the command writes, whose foreign key to ``users`` checks the row on the append's
worker (``FOR KEY SHARE``), and which a deletion deletes on every node:

* ``purchase.start``, ``purchase.complete``, ``purchase.fail``: each upserts the
  ``purchases`` row of its customer (``customer_id REFERENCES users``);
* ``access.grant``: upserts the ``content_access`` row of its user (``user_id REFERENCES
  users``);
* ``access.revoke``: upserts that row too, with the values its ``Access`` aggregate holds,
  just before its event deletes it, in the same append (``revocation_guard``; the
  projection stays the event's mapping, and the row never outlives the append);
* ``content.publish``: inserts the ``content`` row of its creator (``creator_id
  REFERENCES users``; publishing an existing id records nothing).

An upsert (``INSERT ... ON CONFLICT DO UPDATE``) whose row a deletion removed inserts it,
and the key is checked; one whose row is there updates it under a row lock that the
deletion's cascade waits for. A deletion that commits first fails the command's foreign
key: the command is decided again and finds the person gone (``was deleted``); one that
commits second waits for the command and cascades over its row (``content``: sets its
creator to NULL). Either way no row of a deleted person is left, as on one server, and a
revocation after a deletion is answered ``was deleted`` as there
(``tests/integration/test_log_one_worker.py``).

Why a revocation's guard is an upsert of its row, not a routed ``SELECT ... FOR KEY SHARE``
of the person's ``users`` row on the organization's shard (docs/scaling.md, "A revocation
on facts (i28r)"): the upsert is the statement a grant already sends, routed by the row's
whole key (``AccessRevoked`` names its organization since version 3), and the foreign key
does the ordering by itself, where the lock needs a distributed row of that organization to
join ``users`` with (Citus routes a reference table's row lock to the workers otherwise:
``lock_shard_resources`` on every node), a new statement in the recorder, and its own
"no row, decide again" for a person a deletion removed. Its cost: the row's NOT NULL values,
which the aggregate holds for a present access (the only one a revocation records).

Commands that name no person at all and read nothing of the platform's chain (``APART``: a
refund, a content's deletion, an organization's registration) are decided without it too,
with no fact to read.

Left on the ``User`` aggregate, because no row orders them with a deletion: a deletion's
part (``user.leave``: it deletes rows, and the deletion it belongs to needs the platform's
chain anyway), and registrations, deletions and erasures (the platform's chain is theirs).
A decision holding any of them reads the aggregates.
Heartbeats (``playback.progress``) are the playback store's, which decides them on
``users`` already (``ledger.playback``).

A log distributed from one written before the chains (migration 0014) keeps the first
events of its organizations, accesses and playbacks in the platform's chain
(``chains.LEGACY_TOPICS``; ``LedgerRecorder.legacy_claims``). Their route leaves that chain
out all the same once ``ledger db distribute`` has kept those aggregates' versions there
(migration 0033, ``ledger.log.routed``): the read adds the platform's chain only for such
an aggregate not read yet at that version (an organization registered then, an access opened
then), so a publication still finds an organization registered before the chains. On such a
log distributed before 0033, until ``ledger db distribute`` runs again, the route keeps the
platform's chain (``platform_kept``).

What the facts cannot tell, a person with neither a subject nor a ``users`` row (never
registered, or deleted before subjects existed: answered ``is not registered`` and ``was
deleted``), is decided on the ``User`` aggregate as before, the platform's chain then
added to the route: only a command rejected anyway waits for the platform's worker. A
single server (``Ledger`` without a distributed log) runs none of this.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from uuid import UUID

from ledger.commands.access import GrantAccess, RevokeAccess
from ledger.commands.base import Command
from ledger.commands.catalogue import DeleteContent, PublishContent, RegisterOrganization
from ledger.commands.purchases import (
    CompletePurchase,
    FailPurchase,
    RefundPurchase,
    StartPurchase,
)
from ledger.domain import ids
from ledger.domain.aggregates import Access
from ledger.log.chains import PLATFORM
from ledger.privacy.subjects import Subjects
from ledger.service.unit_of_work import UnitOfWork
from projections import content_access
from projections.changes import Upsert

ON_FACTS = (
    StartPurchase,
    CompletePurchase,
    FailPurchase,
    GrantAccess,
    RevokeAccess,
    PublishContent,
)
"""The commands decided on facts of their people: each writes a row of the person it names
(``purchases``, ``content_access``, ``content``; a revocation upserts its row before
deleting it, ``revocation_guard``), whose foreign key to ``users`` orders it with a
deletion (above)."""


APART = (RefundPurchase, DeleteContent, RegisterOrganization)
"""Commands that name no person and read nothing of the platform's chain, decided without
that chain too, so a stopped platform worker does not stop them either: a refund (its
purchase and its refund id, found by their claims, and its customer's access, in the
purchase's organization's chain); a content's deletion (its ``Content`` aggregate, in its
organization's chain, found by its claim when not cached, and the RESTRICT read of
``purchases``, routed by the content's organization: its creator is never looked at);
an organization's registration (its own ``Organization`` aggregate and chain, and its
``organizations`` row, distributed by its id beside them since i28o)."""


def on_facts(commands: Collection[Command]) -> bool:
    """Whether every command of a decision (one, a group, a batch) is one of ``ON_FACTS``
    or ``APART``: the decision is made without the platform's chain."""
    return bool(commands) and all(isinstance(c, (*ON_FACTS, *APART)) for c in commands)


def read(uow: UnitOfWork, values: Iterable[str]) -> None:
    """The facts of these ids or subjects not met yet by this attempt, in one statement."""
    if uow.facts is None:
        return
    wanted = [v for v in dict.fromkeys(values) if v not in uow.people]
    if wanted:
        uow.people.update(uow.facts(wanted))


def subjects_of(uow: UnitOfWork, subjects: Subjects, user_ids: Collection[str]) -> dict[str, str]:
    """The subject of each of these ids that has one, read with the facts (and kept in the
    process's ``Subjects``, as its own read would); each subject's fact kept by subject too."""
    read(uow, user_ids)
    found: dict[str, str] = {}
    for user_id in user_ids:
        person = uow.people[user_id]
        if person.subject is not None:
            found[user_id] = person.subject
            uow.people.setdefault(person.subject, person)
    subjects.remember(found.items())
    return found


def legacy(uow: UnitOfWork, user_id: str) -> str | None:
    """For an id without a subject: the id itself when ``users`` holds it (a person
    registered before subjects, as their events name them); ``None``, the facts cannot
    tell: the log's ``User`` aggregate decides, the platform's chain now in the route."""
    if uow.facts is None:
        return None
    read(uow, [user_id])
    if uow.people[user_id].live:
        return user_id
    reach_platform(uow)
    return None


def live(uow: UnitOfWork, value: str) -> bool | None:
    """Whether the person (by subject, or by id before subjects) is registered and not
    deleted, as ``users`` says; ``None``: not decided on facts, or the facts cannot tell (no
    subject and no row: never registered, erased, or deleted before subjects)."""
    if uow.facts is None:
        return None
    read(uow, [value])
    person = uow.people[value]
    if person.subject is None and not person.live:
        reach_platform(uow)
        return None
    return person.live


def platform_kept(recorder: object) -> bool:
    """Whether a decision on facts keeps the platform's chain in its route: on a log
    written before the chains whose versions there are not kept (above)."""
    claimed = bool(getattr(recorder, "legacy_claims", False))
    return claimed and not getattr(recorder, "legacy_versions", False)


def reach_platform(uow: UnitOfWork) -> None:
    """The platform's chain added to the decision's reads and its append's check."""
    if uow.route is not None:
        uow.route.found.add(PLATFORM)


def needed(uow: UnitOfWork, persons: Iterable[str], aggregates: list[UUID]) -> list[UUID]:
    """``aggregates`` without the ``User`` aggregates of these people (a command's, by id or
    subject) when they are decided on facts: neither read nor checked at append (a cached
    one, lent at its version, would fail the check in the organization's chain, where it is
    not)."""
    if uow.facts is None:
        return aggregates
    theirs = {ids.user_id(v) for v in persons}
    return [i for i in aggregates if i not in theirs]


def revocation_guard(uow: UnitOfWork, access: Access, occurred_at: str) -> Upsert | None:
    """On facts, before ``access`` (present) is revoked: its ``content_access`` row as the
    aggregate holds it (the row's NOT NULL values among them, for a row a deletion's cascade
    removed), to be upserted just before the revocation's deletion of it in the same append
    (``guard``), so that the row's foreign key to ``users`` orders the revocation with a
    deletion as a grant's upsert does (above). The projection stays the event's mapping;
    the row never outlives the append. ``None`` on a single server, where the ``User``
    aggregate orders it."""
    if uow.facts is None or access.organization_id is None or access.access_type is None:
        return None
    values = {
        "id": str(access.id),
        "user_id": access.user_id,
        "content_id": access.content_id,
        "organization_id": access.organization_id,
        "access_type": access.access_type,
        "granted_at": access.granted_at,
        "expires_at": access.expires_at,
    }
    return Upsert(content_access.TABLE, content_access.KEY, values, occurred_at, touch=False)


def guard(uow: UnitOfWork, row: Upsert | None) -> None:
    """The guard of a revocation about to be recorded (its event the next of ``uow``): kept
    once the revocation is decided, so a rejected one leaves none."""
    if row is not None:
        uow.guards[len(uow.events)] = row
