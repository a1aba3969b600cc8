"""A decision's read on a distributed log, along its route (``ledger.log.chains.Route``).

Read in the route's chains' shards alone and, in the same round trip, the claims of the
aggregates a global key names (``ledger_key_claims``): one claimed in another chain (a key
another organization used, another organization's content) is then read there too, a
second round trip only in that case, and that chain kept in the route for the append's
check.

On a log written before the chains (migration 0014) and distributed, the first events of
its organizations, accesses and playbacks are in the platform's chain
(``chains.LEGACY_TOPICS``), their later events in their organization's. A route without
the platform's chain asks, in the same round trip and on the coordinator (a reference
table), which of the aggregates read are such, and at which version their events there end
(``ledger_legacy_versions``, migration 0033): one read from below that version (not cached
by the service at it) is read in the platform's chain too, which then joins the route (the
append's check reads there); one read from that version on needs nothing more of that chain
(its events there never change), and the append's check takes that version for it where
the chains read hold none of its events (0033's ``ledger_assert_read_versions_in``). So a
stopped platform worker stops only a decision that needs such an aggregate not read before
(docs/scaling.md, "A log written before the chains").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from uuid import UUID

from psycopg import Connection, sql

from ledger.log import statements
from ledger.log.chains import PLATFORM, Route


@lru_cache(maxsize=8)
def legacy_versions_sql(schema: str) -> sql.Composed:
    """The version each of these aggregates begun before the chains has in the platform's
    chain (a reference table: read on the coordinator)."""
    return sql.SQL(
        "SELECT aggregate_id, version FROM {} WHERE aggregate_id = ANY(%s::uuid[])"
    ).format(sql.Identifier(schema, "ledger_legacy_versions"))


def events(
    conn: Connection[Any],
    schema: str,
    ids: Sequence[UUID],
    after: Sequence[int],
    route: Route,
    legacy: bool,
) -> list[Any]:
    """The rows of these aggregates' events after the versions given, along ``route``
    (``legacy``: the log keeps ``ledger_legacy_versions``), in aggregate and version order."""
    chains = route.reads()
    keyed = [i for i in ids if i in route.claimable]
    old = legacy and PLATFORM not in chains
    found, homes, versions = conn.cursor(), conn.cursor(), conn.cursor()
    with conn.pipeline():  # no chain yet: none read (an empty ANY reads every shard)
        if chains:
            found.execute(statements.events_in_sql(schema), (ids, after, chains), prepare=True)
        if keyed:
            homes.execute(statements.homes_sql(schema), (keyed,), prepare=True)
        if old:
            versions.execute(legacy_versions_sql(schema), (list(ids),), prepare=True)
    rows = found.fetchall() if chains else []
    claimed = {r["organization_id"] for r in homes.fetchall()} if keyed else set()
    elsewhere = claimed - set(chains)
    if old:
        since = dict(zip(ids, after, strict=True))
        if any(since[r["aggregate_id"]] < r["version"] for r in versions.fetchall()):
            elsewhere.add(PLATFORM)  # its first events, not read yet
    route.found |= elsewhere
    if elsewhere:
        more = (ids, after, sorted(elsewhere))
        rows += conn.execute(statements.events_in_sql(schema), more, prepare=True).fetchall()
        rows.sort(key=lambda r: (r["originator_id"], r["originator_version"]))
    return rows
