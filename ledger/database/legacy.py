"""The claims' mark of a distributed log written before the chains (``chains.LEGACY_MARK``):
whether its appends claim ``chains.LEGACY_TOPICS`` too.

A process must know it before its first command, so it is kept where the coordinator reads
it alone: a column of the order's row (migration 0030; ``ledger_log_order`` is a reference
table, whose copy the coordinator holds). Read from the claims themselves (a routed read on
the worker of the mark's shard) a stopped worker failed every command of every organization
of a process started while it was down (docs/scaling.md, "The last single points (i28a)").

And the versions such a log holds in the platform's chain of its organizations' aggregates
(``ledger_legacy_versions``, migration 0033: ``keep_versions``), so that a decision reads
that chain only for an aggregate of before the chains whose events there it has not read
(docs/scaling.md, "A log written before the chains")."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ledger.database import placement
from ledger.log import chains

CLAIMS = "ledger_key_claims"
_ORDER = "ledger_log_order"
_COLUMN = "legacy_claims"  # migration 0030
VERSIONS = "ledger_legacy_versions"  # migration 0033
_VERSIONS_KEPT = "legacy_versions"  # migration 0033, on the order's row


def claim_legacy(conn: psycopg.Connection[Any], schema: str) -> None:
    """The first events of organizations' aggregates that the platform's chain holds from
    before the chains (``chains.LEGACY_TOPICS``: a log upgraded through 0014 keeps its old
    events there) are claimed for that chain, with ``chains.LEGACY_MARK``, so the appends
    claim those topics too and a redelivered command meets the old aggregate (``duplicate``)
    instead of starting it again in its organization's chain, whose primary key would not
    see the old one. Nothing on a log without such events; safe to run again (a log
    distributed before this was written gets its claims on the next run). The mark is then
    kept on the order's row too (``keep_mark``), after the order is set."""
    claims, log = sql.Identifier(schema, CLAIMS), sql.Identifier(schema, "ledger_events")
    found = conn.execute(
        sql.SQL(
            "INSERT INTO {} (claim_id, organization_id) SELECT originator_id, organization_id"
            " FROM {} WHERE organization_id = %s AND originator_version = 1"
            " AND topic = ANY(%s) ON CONFLICT (claim_id) DO NOTHING"
        ).format(claims, log),
        (chains.PLATFORM, sorted(chains.LEGACY_TOPICS)),
    ).rowcount
    if found:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (claim_id, organization_id) VALUES (%s, %s)"
                " ON CONFLICT (claim_id) DO NOTHING"
            ).format(claims),
            (chains.LEGACY_MARK, chains.PLATFORM),
        )


def keep_mark(conn: psycopg.Connection[Any], schema: str) -> None:
    """Writes the claims' mark on the order's row (the log in the ``organization`` order: the
    row is there), from the claims; nothing on a schema before migration 0030."""
    if not _kept(conn, schema):
        return
    claimed = _claims_hold_mark(conn, schema)
    conn.execute(
        sql.SQL("UPDATE {} SET {} = %s WHERE {} IS DISTINCT FROM %s").format(
            sql.Identifier(schema, _ORDER), sql.Identifier(_COLUMN), sql.Identifier(_COLUMN)
        ),
        (claimed, claimed),
    )


def keep_versions(conn: psycopg.Connection[Any], schema: str) -> None:
    """Places ``ledger_legacy_versions`` (migration 0033) as a reference table, fills it with
    the version each aggregate of ``chains.LEGACY_TOPICS`` begun before the chains has in the
    platform's chain, and marks it filled on the order's row (after ``keep_mark``). Fixed
    once written: such an aggregate's later events go to its organization's chain (its
    command names the organization or its content), only users' go to the platform's. Safe
    to run again; nothing on a schema before 0033."""
    table = sql.Identifier(schema, VERSIONS)
    name = table.as_string(conn)
    if _value(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()) is not True:
        return
    if placement.places_of(conn, schema, [VERSIONS])[VERSIONS] != "reference":
        conn.execute("SELECT create_reference_table(%s::regclass)", (name,))
    log = sql.Identifier(schema, "ledger_events")
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (aggregate_id, version) SELECT originator_id, max(originator_version)"
            " FROM {} WHERE organization_id = %s AND originator_id IN (SELECT originator_id"
            " FROM {} WHERE organization_id = %s AND originator_version = 1 AND topic = ANY(%s))"
            " GROUP BY originator_id ON CONFLICT (aggregate_id) DO NOTHING"
        ).format(table, log, log),
        (chains.PLATFORM, chains.PLATFORM, sorted(chains.LEGACY_TOPICS)),
    )
    conn.execute(
        sql.SQL("UPDATE {} SET {} = true WHERE NOT {}").format(
            sql.Identifier(schema, _ORDER),
            sql.Identifier(_VERSIONS_KEPT),
            sql.Identifier(_VERSIONS_KEPT),
        )
    )


def versions_kept(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether ``ledger_legacy_versions`` is filled (``keep_versions``): the order's row, read
    on the coordinator; ``False`` before 0033 or before ``ledger db distribute`` ran since."""
    if not _kept(conn, schema, _VERSIONS_KEPT):
        return False
    row = conn.execute(
        sql.SQL("SELECT coalesce(bool_or({}), false) AS kept FROM {}").format(
            sql.Identifier(_VERSIONS_KEPT), sql.Identifier(schema, _ORDER)
        )
    ).fetchone()
    return bool(_value(row))


def legacy_claimed(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether the appends of this distributed log claim ``chains.LEGACY_TOPICS`` too: the
    order's row, read on the coordinator; on a schema before migration 0030, the claims'
    mark (one routed read). Any row factory."""
    if not _kept(conn, schema):
        return _claims_hold_mark(conn, schema)
    row = conn.execute(
        sql.SQL("SELECT coalesce(bool_or({}), false) AS kept FROM {}").format(
            sql.Identifier(_COLUMN), sql.Identifier(schema, _ORDER)
        )
    ).fetchone()
    return bool(_value(row))


def _claims_hold_mark(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        sql.SQL("SELECT count(*) AS n FROM {} WHERE claim_id = %s").format(
            sql.Identifier(schema, CLAIMS)
        ),
        (chains.LEGACY_MARK,),
    ).fetchone()
    return bool(_value(row))


def _kept(conn: psycopg.Connection[Any], schema: str, column: str = _COLUMN) -> bool:
    """Whether the order's row has the mark's column (migration 0030): a catalog read."""
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_attribute WHERE attrelid = to_regclass(%s)"
        " AND attname = %s AND NOT attisdropped",
        (sql.Identifier(schema, _ORDER).as_string(conn), column),
    ).fetchone()
    return bool(_value(row))


def _value(row: Any) -> Any:
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
