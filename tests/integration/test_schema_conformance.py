"""The projected tables, read back from pg_catalog, against the reviewed schema.

The expectations below are the specification (shared/schema-review.md with every
recommendation applied, and the contract), written out column by column: dropping
any single recommendation from the migrations makes this test fail.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger.database import distribution

Conn = psycopg.Connection[Any]
TS = "timestamp with time zone"

# table -> column -> (type, nullable, default)
COLUMNS: dict[str, dict[str, tuple[str, bool, str | None]]] = {
    "organizations": {
        "id": ("uuid", False, "gen_random_uuid()"),
        "name": ("character varying(255)", False, None),
        "created_at": (TS, False, "now()"),
        "updated_at": (TS, False, "now()"),
    },
    "users": {
        "id": ("text", False, None),
        "created_at": (TS, False, "now()"),
        "updated_at": (TS, False, "now()"),
    },
    "content": {
        "id": ("uuid", False, "gen_random_uuid()"),
        "organization_id": ("uuid", False, None),
        "creator_id": ("text", True, None),
        "title": ("character varying(500)", False, None),
        "created_at": (TS, False, "now()"),
        "updated_at": (TS, False, "now()"),
    },
    "content_access": {  # H1, M1, M3, L1, L2, L4 + granted_at, last_accessed_at
        "id": ("uuid", False, "gen_random_uuid()"),
        "user_id": ("text", False, None),
        "content_id": ("uuid", False, None),
        "organization_id": ("uuid", False, None),
        "access_type": ("character varying(50)", False, None),
        "granted_at": (TS, False, "now()"),
        "expires_at": (TS, True, None),
        "last_accessed_at": (TS, True, None),
        "created_at": (TS, False, "now()"),
        "updated_at": (TS, False, "now()"),
    },
    "purchases": {  # H1, M1, M4, L1, L2, L3 + revenue split, refunded_amount_cents, updated_at
        "id": ("uuid", False, "gen_random_uuid()"),
        "customer_id": ("text", False, None),
        "content_id": ("uuid", False, None),
        "organization_id": ("uuid", False, None),
        "stripe_payment_intent_id": ("character varying(255)", False, None),
        "status": ("character varying(50)", False, None),
        "amount_paid_cents": ("integer", False, None),
        "currency": ("character varying(3)", False, "'usd'::character varying"),
        "revenue_split_config_id": ("uuid", True, None),
        "platform_fee_cents": ("integer", True, None),
        "organization_fee_cents": ("integer", True, None),
        "creator_payout_cents": ("integer", True, None),
        "refunded_amount_cents": ("integer", False, "0"),
        "created_at": (TS, False, "now()"),
        "updated_at": (TS, False, "now()"),
    },
    "video_playback": {  # as reviewed, L1, + its content's organization (migration 0026)
        "id": ("uuid", False, "gen_random_uuid()"),
        "user_id": ("text", False, None),
        "content_id": ("uuid", False, None),
        "position_seconds": ("integer", False, "0"),
        "duration_seconds": ("integer", False, None),
        "completed": ("boolean", False, "false"),
        "updated_at": (TS, False, "now()"),
        "created_at": (TS, False, "now()"),
        "organization_id": ("uuid", False, None),  # added last, by 0026
    },
}

# (table, columns) -> (referenced table, referenced columns, ON DELETE). Since migration 0015
# purchases and content_access reference content by (organization_id, content_id): the
# reviewed key to content, carrying the organization (content's rows distributed by it on
# Citus, docs/scaling.md), which on one server holds what the single column held and more
FOREIGN_KEYS: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...], str]] = {
    ("content", ("organization_id",)): ("organizations", ("id",), "CASCADE"),
    ("content", ("creator_id",)): ("users", ("id",), "SET NULL"),
    ("content_access", ("user_id",)): ("users", ("id",), "CASCADE"),
    ("content_access", ("organization_id", "content_id")): (
        "content",
        ("organization_id", "id"),
        "CASCADE",
    ),
    ("content_access", ("organization_id",)): ("organizations", ("id",), "CASCADE"),  # H1
    ("purchases", ("customer_id",)): ("users", ("id",), "CASCADE"),
    ("purchases", ("organization_id", "content_id")): (
        "content",
        ("organization_id", "id"),
        "RESTRICT",
    ),
    ("purchases", ("organization_id",)): ("organizations", ("id",), "RESTRICT"),  # H1
    ("video_playback", ("user_id",)): ("users", ("id",), "CASCADE"),
    # by (organization_id, content_id) since migration 0026, as content_access's
    ("video_playback", ("organization_id", "content_id")): (
        "content",
        ("organization_id", "id"),
        "CASCADE",
    ),
}

# index name -> (table, columns, unique, predicate)
INDEXES: dict[str, tuple[str, tuple[str, ...], bool, str | None]] = {
    "idx_content_access_user_id": ("content_access", ("user_id",), False, None),
    "idx_content_access_content_id": ("content_access", ("content_id",), False, None),
    "idx_content_access_organization_id": ("content_access", ("organization_id",), False, None),
    "idx_content_access_created_at": ("content_access", ("created_at",), False, None),  # L2
    # unique keys carry organization_id (migration 0013, issue 28: Citus requires it)
    "content_access_user_id_content_id_unique": (
        "content_access",
        ("organization_id", "user_id", "content_id"),
        True,
        None,
    ),
    "idx_purchases_customer_id": ("purchases", ("customer_id",), False, None),
    "idx_purchases_content_id": ("purchases", ("content_id",), False, None),
    "idx_purchases_organization_id": ("purchases", ("organization_id",), False, None),  # H1
    "idx_purchases_created_at": ("purchases", ("created_at",), False, None),  # L2
    "purchases_stripe_payment_intent_id_unique": (
        "purchases",
        ("organization_id", "stripe_payment_intent_id"),
        True,
        None,
    ),  # L3
    "idx_video_playback_user_id": ("video_playback", ("user_id",), False, None),
    "idx_video_playback_content_id": ("video_playback", ("content_id",), False, None),
    "video_playback_user_id_content_id_unique": (  # led by organization_id (0026)
        "video_playback",
        ("organization_id", "user_id", "content_id"),
        True,
        None,
    ),
    "idx_video_playback_user_completed": (
        "video_playback",
        ("user_id", "completed"),
        False,
        "(completed = true)",
    ),  # M2
    "idx_content_organization_id": ("content", ("organization_id",), False, None),
    # content ids unique on one server (migration 0015)
    "content_id_unique": ("content", ("id",), True, None),
    "idx_content_creator_id": ("content", ("creator_id",), False, None),
}

# CHECK constraints that must exist (M1 and the revenue split), by name -> a phrase of it
CHECKS: dict[str, tuple[str, str]] = {
    "content_access_access_type_check": (
        "content_access",
        "'purchased'::character varying, 'subscription'::character varying, "
        "'complimentary'::character varying, 'preview'::character varying",
    ),
    "purchases_status_check": (
        "purchases",
        "'pending'::character varying, 'completed'::character varying, "
        "'refunded'::character varying, 'failed'::character varying",
    ),
    "purchases_fees_non_negative": ("purchases", "platform_fee_cents >= 0"),
    "purchases_fees_sum_to_amount": ("purchases", "(platform_fee_cents)::bigint"),
    "purchases_refunded_amount_in_range": ("purchases", "refunded_amount_cents >= 0"),
}


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_columns_types_nullability_and_defaults(conn: Conn, table: str) -> None:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid)"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE n.nspname = current_schema() AND c.relname = %s AND a.attnum > 0"
        " AND NOT a.attisdropped ORDER BY a.attnum",
        (table,),
    ).fetchall()
    assert {name: (kind, nullable, default) for name, kind, nullable, default in rows} == COLUMNS[
        table
    ]
    assert [r[0] for r in rows] == list(COLUMNS[table])  # column order, for exact dumps


def test_every_timestamp_is_timestamptz(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND data_type LIKE 'timestamp%%'"
        " AND table_name = ANY(%s)",
        (list(COLUMNS),),
    ).fetchall()
    assert rows and all(r[2] == TS for r in rows)


def test_foreign_keys_and_their_delete_rules(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT src.relname,"
        " ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),"
        " dst.relname,"
        " ARRAY(SELECT b.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_attribute b ON b.attrelid = c.confrelid AND b.attnum = k.n ORDER BY k.o),"
        " CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'r' THEN 'RESTRICT'"
        " WHEN 'n' THEN 'SET NULL' WHEN 'a' THEN 'NO ACTION' ELSE c.confdeltype::text END"
        " FROM pg_constraint c JOIN pg_class src ON src.oid = c.conrelid"
        " JOIN pg_class dst ON dst.oid = c.confrelid"
        " JOIN pg_namespace n ON n.oid = src.relnamespace"
        " WHERE c.contype = 'f' AND n.nspname = current_schema()"
    ).fetchall()
    found = {(r[0], tuple(r[1])): (r[2], tuple(r[3]), r[4]) for r in rows}
    assert len(found) == len(rows)
    assert found == FOREIGN_KEYS


def test_every_foreign_key_column_is_indexed(conn: Conn) -> None:
    """Read from the database: every foreign key's first column leads an index of its table
    (a delete of the referenced row, or a join, never scans the referencing table)."""
    rows = conn.execute(
        "SELECT src.relname,"
        " ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)"
        "  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),"
        " EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.conrelid"
        "  AND x.indkey[0] = c.conkey[1])"
        " FROM pg_constraint c JOIN pg_class src ON src.oid = c.conrelid"
        " JOIN pg_namespace n ON n.oid = src.relnamespace"
        " WHERE c.contype = 'f' AND n.nspname = current_schema()"
    ).fetchall()
    assert {(r[0], tuple(r[1])) for r in rows} == set(FOREIGN_KEYS)
    assert [(r[0], r[1]) for r in rows if not r[2]] == []


def test_indexes_unique_constraints_and_the_partial_index(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT i.relname, t.relname, array_agg(a.attname ORDER BY k.ord), x.indisunique,"
        " pg_get_expr(x.indpred, x.indrelid)"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
        " WHERE n.nspname = current_schema() AND NOT x.indisprimary AND t.relname = ANY(%s)"
        " GROUP BY i.relname, t.relname, x.indisunique, x.indpred, x.indrelid",
        (list(COLUMNS),),
    ).fetchall()
    found = {r[0]: (r[1], tuple(r[2]), r[3], r[4]) for r in rows}
    assert found == _indexes_of_the_layout(conn)


def _indexes_of_the_layout(conn: Conn) -> dict[str, tuple[str, tuple[str, ...], bool, str | None]]:
    """``INDEXES``; on the distributed layout (``ledger db distribute``) less what Citus cannot
    hold on a distributed table (``distribution.CITUS_CANNOT_HOLD``: content ids unique
    without the organization, which the log keeps there, docs/schema.md), dropped as the
    table is placed: all the rest holds on both layouts."""
    row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    placed = distribution.places(conn, str(row[0]))
    return {
        name: index
        for name, index in INDEXES.items()
        if (index[0], name) not in distribution.CITUS_CANNOT_HOLD or placed[index[0]] == "local"
    }


def test_primary_keys(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT t.relname, array_agg(a.attname) FROM pg_constraint c"
        " JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(c.conkey)"
        " WHERE c.contype = 'p' AND n.nspname = current_schema() GROUP BY t.relname"
    ).fetchall()
    keys = {r[0]: sorted(r[1]) for r in rows}
    # the tables distributed by organization on Citus carry it in their key (migrations 0013
    # and 0015, 0026 for video_playback)
    carried = {"purchases", "content_access", "content", "video_playback"}
    assert {t: keys[t] for t in COLUMNS} == {
        t: (["id", "organization_id"] if t in carried else ["id"]) for t in COLUMNS
    }


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check_constraints(conn: Conn, name: str) -> None:
    table, phrase = CHECKS[name]
    row = conn.execute(
        "SELECT t.relname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE c.contype = 'c' AND n.nspname = current_schema() AND c.conname = %s",
        (name,),
    ).fetchone()
    assert row is not None and row[0] == table
    assert phrase in row[1]


def test_the_event_log_shape_and_its_always_enabled_triggers(conn: Conn) -> None:
    columns = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'ledger_events'"
        " ORDER BY ordinal_position"
    ).fetchall()
    assert columns == [
        ("originator_id", "uuid", "NO"),
        ("originator_version", "bigint", "NO"),
        ("topic", "text", "NO"),
        ("state", "bytea", "NO"),
        ("notification_id", "bigint", "NO"),
        ("recorded_at", TS, "NO"),
        ("hash", "bytea", "NO"),
        # its chain and its position there (migration 0014, docs/stream.md)
        ("organization_id", "uuid", "NO"),
        ("position", "bigint", "NO"),
    ]
    triggers = conn.execute(
        "SELECT tgname, tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relname = 'ledger_events' AND NOT tgisinternal"
    ).fetchall()
    assert dict(triggers) == {
        "ledger_events_no_update_delete": "A",
        "ledger_events_no_truncate": "A",
        "ledger_events_hash_chain": "A",
        "ledger_events_insert_lock": "A",
        "ledger_events_check_shape": "A",
        # not a guard: enabled only while projected tables are marked stale
        "ledger_events_refuse_while_stale": "D",
    }
    unique = conn.execute(
        "SELECT indisunique FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_namespace n ON n.oid = i.relnamespace"
        " WHERE n.nspname = current_schema() AND i.relname = 'ledger_events_notification_id_idx'"
    ).fetchone()
    assert unique == (True,)
