"""A command's people as their subjects (docs/privacy.md): the service decides on
pseudonyms only, so nothing the log holds is computed from a person's id.

``user_id``, ``customer_id`` and ``creator_id`` are swapped for the person's subject
(``ledger.privacy.subjects``) before the command is decided, its fingerprint included:

* a person with a row in ``ledger_subjects``: their subject;
* a person registered before subjects (their ``User`` aggregate is keyed by their id,
  ``ids.user_id(user_id)``, not erased): their id, as their older events name them;
* ``user.register`` of an id that has neither (or whose person was erased): a new
  random subject, whose row is written with the registration's events;
* any other command naming no one: a random subject that names no one either, so the
  command finds no user and answers ``not_found`` as before.

A rejection's message names the ids as the command gave them, not their subjects.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from ledger.commands.base import Command
from ledger.commands.catalogue import EraseUser, RegisterUser
from ledger.domain import ids
from ledger.domain.aggregates import User
from ledger.domain.errors import Rejected
from ledger.privacy.subjects import (
    PERSON_FIELDS,
    SubjectAdded,
    SubjectErased,
    Subjects,
    is_subject,
    mint,
)
from ledger.service import facts
from ledger.service.unit_of_work import UnitOfWork

_FIELDS: dict[type[Command], tuple[str, ...]] = {}
"""Each command type's person fields: asking a pydantic model for a field it lacks raises
inside ``getattr``, which cost more than the rest of the swap (benchmarks/privacy.py)."""


def people(command: Command) -> dict[str, str]:
    """The command's person fields that are set, by field name."""
    kind = type(command)
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = _FIELDS[kind] = tuple(n for n in PERSON_FIELDS if n in kind.model_fields)
    found: dict[str, str] = {}
    for name in fields:
        value = getattr(command, name)
        if isinstance(value, str):
            found[name] = value
    return found


def warm(uow: UnitOfWork, subjects: Subjects, commands: Sequence[Command]) -> None:
    """Looks up the subjects of a group's (or an atomic batch's) people in one query; those
    without one are not asked again by this attempt."""
    wanted = {v for c in commands for v in people(c).values()} - uow.added.keys() - uow.unnamed
    if wanted:
        found = _subjects_of(uow, subjects, wanted)
        uow.unnamed.update(wanted - found.keys())


def _subjects_of(uow: UnitOfWork, subjects: Subjects, user_ids: Collection[str]) -> dict[str, str]:
    """From the facts of ``users`` when the decision is made on them (``ledger.service.facts``:
    the same statement says whether each is live), else from ``Subjects``."""
    if uow.facts is not None:
        return facts.subjects_of(uow, subjects, user_ids)
    return subjects.subjects_of(user_ids)


def pseudonymous(
    uow: UnitOfWork, subjects: Subjects, command: Command
) -> tuple[Command, dict[str, str]]:
    """The command as the service decides it, and the ids it named by their subjects."""
    given = people(command)
    if not given:
        return command, {}
    lacking = [u for u in given.values() if u not in uow.added and u not in uow.unnamed]
    known = dict(uow.added)
    if lacking:
        found = _subjects_of(uow, subjects, lacking)
        uow.unnamed.update(u for u in lacking if u not in found)
        known = {**found, **known}
    registering = isinstance(command, RegisterUser)
    swapped: dict[str, str] = {}
    for name, user_id in given.items():
        subject = known.get(user_id)
        if subject is not None and registering:
            existing = uow.get(ids.user_id(subject), User)
            if existing is not None and existing.erased:  # erased by another process
                subjects.forget([subject])
                subject = None
        if subject is None:
            subject = facts.legacy(uow, user_id)
        if subject is None:
            legacy = uow.get(ids.user_id(user_id), User)
            subject = user_id if legacy is not None and not legacy.erased else mint()
        swapped[name] = subject
    named = {s: u for u, s in zip(given.values(), swapped.values(), strict=True)}
    return command.model_copy(update=swapped), named


def settle(uow: UnitOfWork, command: Command, named: Mapping[str, str], recorded: bool) -> None:
    """After a decision that recorded events: a registration's new subject is written with
    them, an erasure's subject deleted with them."""
    if not recorded:
        return
    if isinstance(command, RegisterUser) and is_subject(command.user_id):
        user_id = named[command.user_id]
        if uow.added.get(user_id) != command.user_id:
            uow.added[user_id] = command.user_id
            uow.subject_changes.append(SubjectAdded(user_id, command.user_id))
    elif isinstance(command, EraseUser):
        # by subject, or (a person registered before subjects) by the id their older
        # events name: either way, what the playback store keeps of them goes too
        user_id = named.get(command.user_id, command.user_id)
        uow.added.pop(user_id, None)
        uow.subject_changes.append(SubjectErased(command.user_id, user_id))


def renamed(error: Rejected, named: Mapping[str, str]) -> Rejected:
    """The rejection with each subject in its message replaced by the id given."""
    message = error.message
    for subject, user_id in named.items():
        if subject != user_id:
            message = message.replace(subject, user_id)
    if message != error.message:
        error.message = message
        error.args = (message,)
    return error
