"""A person's deletion or erasure, one organization at a time (docs/scaling.md, "A
person's deletion, one organization at a time").

On a layout split by organization, ``user.delete`` and ``user.erase`` would otherwise be
one transaction over every organization the person bought from: on Citus, a distributed
transaction over every worker holding one of them. So the service runs them in parts,
each its own transaction and each done at most once:

1. one part per organization that holds rows of the person (``user.leave``, the event
   ``UserLeftOrganization`` on the (person, organization) ``Departure`` aggregate): their
   purchase and access rows of that organization leave the tables;
2. then the command itself, the global part: the ``UserDeleted`` or ``UserErased`` fact,
   their ``users`` row (and by its foreign keys whatever of theirs is left, such as their
   ``video_playback`` rows, which carry no organization), and for an erasure their subject
   and their rows of the playback store.

The parts run only if the command itself would be recorded now (a dry decision first), so
a command answered ``not_found``, ``duplicate`` or a conflict changes nothing. A crash
after any part leaves the person registered, with some organizations' parts done: the same
command, retried, finds those done (``Departure`` exists: passed over), does the rest and
records the global fact, answered ``accepted`` as the first try would have been. A part
is never applied twice, and the global fact is recorded once (the ``User`` aggregate's
version is guarded at append, as always). On a single server (``per_organization``
false) nothing changes: the command is one transaction, as docs/cli.md has it; so is any
deletion inside an ``--atomic`` batch, on every layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import tuple_row

from ledger.commands.base import Command
from ledger.commands.catalogue import DeleteUser, EraseUser, LeaveOrganization
from ledger.domain.errors import Duplicate, Rejected
from ledger.service.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from ledger.service.application import Ledger

_ORGANIZATIONS = sql.SQL(
    "SELECT organization_id::text FROM {purchases} WHERE customer_id = %(user)s"
    " UNION SELECT organization_id::text FROM {access} WHERE user_id = %(user)s"
    " ORDER BY 1"
)


def before(ledger: Ledger, run: Sequence[Command | Rejected]) -> None:
    """Runs the organizations' parts of every deletion or erasure in ``run`` (commands about
    to be decided), each in its own transaction; the commands themselves follow as usual.
    An error (a lost connection, a stopped worker) propagates, and the retry finishes."""
    if not ledger.per_organization:
        return
    for command in run:
        if isinstance(command, DeleteUser | EraseUser) and _would_record(ledger, command):
            for organization in organizations_of(ledger, command.user_id):
                organization_id = UUID(organization)
                part = LeaveOrganization(user_id=command.user_id, organization_id=organization_id)
                source = command.provenance
                ledger._one(part.stamped(source.source, source.correlation_id))


def _would_record(ledger: Ledger, command: Command) -> bool:
    """Whether the command, decided now, records its event (no ``Duplicate``, no
    rejection); decided in a unit of work that is thrown away."""

    def decide(uow: UnitOfWork) -> bool:
        try:
            ledger._decide(uow, command)
        except (Duplicate, Rejected):
            return False
        return True

    return ledger._settled(UnitOfWork(ledger.aggregates, ledger.store, speculative=False), decide)


def organizations_of(ledger: Ledger, user_id: str) -> list[str]:
    """The organizations whose projected tables hold rows of the person (by id, as the
    tables name people): the parts to run. Read from the tables, which the parts change in
    the same transactions as their events, so a part done is never found again."""
    rows: Any = getattr(ledger.recorder, "rows", None)
    if rows is not None:  # the ledger in memory (ledger.service.memory)
        found = {
            r["organization_id"]
            for table, column in (("purchases", "customer_id"), ("content_access", "user_id"))
            for r in rows.rows[table].values()
            if r.get(column) == user_id
        }
        return sorted(str(o) for o in found)
    schema = ledger.settings.schema
    query = _ORGANIZATIONS.format(
        purchases=sql.Identifier(schema, "purchases"),
        access=sql.Identifier(schema, "content_access"),
    )
    pool = ledger.recorder.datastore.pool  # type: ignore[attr-defined]
    with pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
        return [str(row[0]) for row in cursor.execute(query, {"user": user_id}).fetchall()]
