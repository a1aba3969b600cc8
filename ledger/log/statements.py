"""The log's statements, each built once per schema (``lru_cache``) for the recorder
(``ledger.log.recorder``), which renders and prepares them once per connection.

Identifiers by ``psycopg.sql``, values always bound. On a distributed log (Citus) the
statements that name an organization (``organization_id = ...``) are routed by Citus to that
organization's shard alone; those that do not read every shard (docs/scaling.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import Connection, Cursor, sql

from ledger.database import distribution
from ledger.log.chains import CLAIMED_TOPICS, LEGACY_TOPICS, PLATFORM
from ledger.privacy.subjects import SubjectChange
from projections.changes import RowChange


def duration(milliseconds: int) -> str:
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


def insert_params(chunk: Sequence[StoredEvent], chains: Sequence[UUID]) -> tuple[Any, ...]:
    """The chunk's columns, each an array bound in binary (``_insert_events_sql``)."""
    return (
        [e.originator_id for e in chunk],
        [e.originator_version for e in chunk],
        [e.topic for e in chunk],
        [e.state for e in chunk],
        list(chains),
    )


_RENDERED: dict[int, tuple[sql.Composable, bytes]] = {}


def rendered(query: sql.Composable, conn: Connection[Any]) -> bytes:
    """A composed statement's text, rendered once: psycopg renders a ``Composed`` on
    every execute, which costs the append measurably (docs/performance.md, step 4).

    The statements come from ``lru_cache``-d builders, so the same object recurs; the
    object is kept with its text, so its ``id`` cannot be reused by another.
    """
    found = _RENDERED.get(id(query))
    if found is None or found[0] is not query:
        if len(_RENDERED) > 1024:
            _RENDERED.clear()
        found = _RENDERED[id(query)] = (query, query.as_bytes(conn))
    return found[1]


PROPAGATE_SET = b"SET LOCAL citus.propagate_set_commands TO 'local'"
"""On Citus, the ``SET LOCAL``s after it reach the workers too (``lock_timeout``: a wait for
a chain's row is a worker's, which the coordinator's setting alone does not bound)."""
SEQUENTIAL = b"SET LOCAL citus.multi_shard_modify_mode TO 'sequential'"


def shared(
    row_changes: Sequence[RowChange],
    subject_changes: Sequence[SubjectChange],
    chains: Sequence[UUID],
) -> bool:
    """Whether a distributed log's append needs Citus's sequential mode: it writes a table
    every node holds (a reference table, the coordinator's subjects) after reading or writing
    several shards (Citus refuses it otherwise: "cannot modify table ... because there was a
    parallel operation on a distributed table"). An append of one organization writing only
    its money rows does not, and keeps the parallel mode: its statements route to one shard,
    and the read-version check reads its few shards at once."""
    if subject_changes or len(set(chains)) > 1:
        return True
    # a table distributed by a column of its own (organizations, i28o) is a reference table
    # on a schema placed before, until `ledger db distribute` runs again: counted as one
    return any(
        change.table not in distribution.DISTRIBUTED or change.table in distribution.BY
        for change in row_changes
    )


@lru_cache(maxsize=8)
def insert_events_sql(schema: str) -> sql.Composed:
    """The events as four arrays, inserted in their order (``unnest`` of several arrays
    zips them; ``WITH ORDINALITY`` and ``ORDER BY`` make the order explicit, so the chain
    trigger and the positions follow the list). One statement for any number of events:
    a ``VALUES`` list of one placeholder per column and row was a new statement text for
    every count, which psycopg parsed on every append (too long for its cache)."""
    return _insert_events(schema, "notification_id")


@lru_cache(maxsize=8)
def insert_events_keyed_sql(schema: str) -> sql.Composed:
    """``insert_events_sql`` returning each position with its event's key, for a distributed
    log's append of several chains: Citus returns the rows shard by shard, not in the list's
    order, so the recorder pairs them by key (``ordered``); one server returns them in order."""
    return _insert_events(schema, "originator_id, originator_version, notification_id")


def _insert_events(schema: str, returned: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state, organization_id) "
        "SELECT i, v, t, s, o FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[], "
        "%b::uuid[]) WITH ORDINALITY AS e(i, v, t, s, o, n) ORDER BY n "
        "RETURNING {}"
    ).format(sql.Identifier(schema, "ledger_events"), sql.SQL(returned))


def inserting(schema: str, distributed: bool) -> sql.Composed:
    """The insert of several chains' events: keyed on a distributed log."""
    return insert_events_keyed_sql(schema) if distributed else insert_events_sql(schema)


def ordered(events: Sequence[StoredEvent], inserted: Sequence[Cursor[Any]]) -> list[int]:
    """The positions of ``events`` in their order, from their inserts' rows: as they come,
    or paired by each event's key when the rows carry it (``insert_events_keyed_sql``: a
    distributed log's rows come back shard by shard). A batch of several chains answered
    each command with another's position before (issue 28)."""
    rows: list[Mapping[str, Any]] = [row for cursor in inserted for row in cursor.fetchall()]
    if not rows or "originator_id" not in rows[0]:
        return [row["notification_id"] for row in rows]
    position = {
        (row["originator_id"], row["originator_version"]): row["notification_id"] for row in rows
    }
    return [position[(e.originator_id, e.originator_version)] for e in events]


@lru_cache(maxsize=64)
def insert_routed_sql(schema: str, rows: int) -> sql.Composed:
    """On a distributed log, an append of one chain: a multi-row ``INSERT ... VALUES`` whose
    organization is a bound value, which Citus routes to that chain's shard as it is, in the
    rows' order. ``insert_events_sql`` (an ``INSERT ... SELECT``) goes through the
    coordinator with an intermediate result there. One text per row count: most appends
    carry a few events, and the count is bounded by ``ROUTED_ROWS``."""
    row = sql.SQL("(%s, %s, %s, %s, %s)")
    return sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state, organization_id) "
        "VALUES {} RETURNING notification_id"
    ).format(sql.Identifier(schema, "ledger_events"), sql.SQL(", ").join([row] * rows))


ROUTED_ROWS = 32
"""Events per routed INSERT on a distributed log (``insert_routed_sql``): 160 parameters."""


def routed_params(chunk: Sequence[StoredEvent], chain: UUID) -> list[Any]:
    """The chunk's values, row by row (``insert_routed_sql``)."""
    values: list[Any] = []
    for event in chunk:
        values += [event.originator_id, event.originator_version, event.topic, event.state, chain]
    return values


@lru_cache(maxsize=8)
def open_chain_sql(schema: str) -> sql.Composed:
    """``open_chains_sql`` for one chain, routed by Citus to its shard (a distributed log)."""
    return sql.SQL("INSERT INTO {} (organization_id) VALUES (%s) ON CONFLICT DO NOTHING").format(
        sql.Identifier(schema, "ledger_chain_heads")
    )


def claims(
    events: Sequence[StoredEvent], chains: Sequence[UUID], legacy: bool = False
) -> list[tuple[UUID, UUID]]:
    """The keys this append claims (``ledger_key_claims``, migration 0023): on a distributed
    log the primary key of the events leads with the organization, so the claim's own key,
    distributed by the key's id, is what lets one organization's append take a key. On a
    log whose platform chain holds organizations' aggregates of before the chains
    (``legacy``: ``chains.LEGACY_TOPICS``), their first events too."""
    topics = CLAIMED_TOPICS | LEGACY_TOPICS if legacy else CLAIMED_TOPICS
    return [
        (UUID(str(e.originator_id)), chain)
        for e, chain in zip(events, chains, strict=True)
        if e.originator_version == 1 and e.topic in topics
    ]


@lru_cache(maxsize=8)
def share_platform_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT 1 FROM {} WHERE organization_id = {} FOR SHARE").format(
        sql.Identifier(schema, "ledger_chain_heads"), sql.Literal(str(PLATFORM))
    )


@lru_cache(maxsize=8)
def open_chains_sql(schema: str) -> sql.Composed:
    """A chain's row exists from its first append on (``ON CONFLICT``: two first appends
    of a new organization meet on its key, and the second waits for the first)."""
    return sql.SQL(
        "INSERT INTO {} (organization_id) SELECT unnest(%s::uuid[]) ON CONFLICT DO NOTHING"
    ).format(sql.Identifier(schema, "ledger_chain_heads"))


@lru_cache(maxsize=8)
def lock_chain_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT 1 FROM {} WHERE organization_id = %s FOR UPDATE").format(
        sql.Identifier(schema, "ledger_chain_heads")
    )


@lru_cache(maxsize=8)
def notify_sql(channel: str) -> sql.Composed:
    """Wakes the library's subscriptions at commit (not before: PostgreSQL delivers a
    transaction's notifications when it commits, and drops them if it rolls back)."""
    return sql.SQL("NOTIFY {}").format(sql.Identifier(channel))


@lru_cache(maxsize=8)
def events_after_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {} e "
        "JOIN unnest(%s::uuid[], %s::bigint[]) AS w(id, version) "
        "ON e.originator_id = w.id AND e.originator_version > w.version "
        "ORDER BY e.originator_id, e.originator_version"
    ).format(sql.Identifier(schema, "ledger_events"))


@lru_cache(maxsize=8)
def assert_read_versions_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT {}(%s::uuid[], %s::bigint[])").format(
        sql.Identifier(schema, "ledger_assert_read_versions")
    )


@lru_cache(maxsize=8)
def has_purchase_rows_sql(schema: str) -> sql.Composed:
    """The RESTRICT rule's read, by the content's organization too: every purchase of a
    content carries it (``purchases``' key (organization_id, content_id) references
    ``content``), so the answer is the same, and on Citus the read goes to the
    organization's shard alone instead of every shard (a stopped worker of other
    organizations no longer fails it: docs/scaling.md, i28o)."""
    return sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE organization_id = %s AND content_id = %s "
        "AND customer_id <> ALL(%s::text[]))"
    ).format(sql.Identifier(schema, "purchases"))


@lru_cache(maxsize=8)
def events_in_sql(schema: str) -> sql.Composed:
    """``events_after_sql`` in the chains given: routed by Citus to their shards alone."""
    return sql.SQL(
        "SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {} e "
        "JOIN unnest(%s::uuid[], %s::bigint[]) AS w(id, version) "
        "ON e.originator_id = w.id AND e.originator_version > w.version "
        "WHERE e.organization_id = ANY(%s::uuid[]) "
        "ORDER BY e.originator_id, e.originator_version"
    ).format(sql.Identifier(schema, "ledger_events"))


@lru_cache(maxsize=8)
def homes_sql(schema: str) -> sql.Composed:
    """The chain of each of these aggregates that a global key names (its claim's)."""
    return sql.SQL(
        "SELECT claim_id, organization_id FROM {} WHERE claim_id = ANY(%s::uuid[])"
    ).format(sql.Identifier(schema, "ledger_key_claims"))


@lru_cache(maxsize=8)
def assert_read_versions_in_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT {}(%s::uuid[], %s::bigint[], %s::uuid[])").format(
        sql.Identifier(schema, "ledger_assert_read_versions_in")
    )
