"""``video_playback`` carries its content's organization (migration 0026, issue 28).

Every writer gives a row its content's organization: the store's group write (one
statement on one server, ``ledger.playback.distributed`` on Citus), the rebuild's fold of
the store, and the log's projection of a ``PlaybackProgressed`` (the organization filled
from the content as data). The migration fills the rows there are from ``content``, and its
rollback gives back 0024's shape, under which 0022's statement writes heartbeats again.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from ledger.config import Settings
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.service import Ledger
from ledger.upkeep.rebuild import rebuild
from tests.citus_support import PlacingFromHere
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG,
    ORG_2,
    answers,
    append,
    catalogue,
    cli,
    dump_all,
    grant,
    org,
    play,
    publish,
    t,
)

Conn = psycopg.Connection[Any]


def _env(settings: Settings) -> dict[str, str]:
    import os

    return dict(os.environ, LEDGER_DATABASE_URL=settings.url, LEDGER_SCHEMA=settings.schema)


def _two_organizations() -> list[dict[str, Any]]:
    """Alice watches a video of each of two organizations."""
    return [
        *catalogue(),
        org(ORG_2, "Southwind"),
        publish(CONTENT_2, ORG_2, title="Another video"),
        grant("alice", at=t(2)),
        grant("alice", CONTENT_2, at=t(2)),
    ]


def _shown(conn: Conn) -> list[tuple[Any, ...]]:
    """Each row's pair, organization and position, and whether its organization is its
    content's. The join is by content id alone, to see a row's organization against its
    content's: on the distributed layout Citus runs such a join only repartitioned (a
    placeholder setting on a single server)."""
    conn.execute("SELECT set_config('citus.enable_repartition_joins', 'on', false)")
    return conn.execute(
        "SELECT v.user_id, v.content_id::text, v.organization_id::text, v.position_seconds,"
        " v.organization_id = c.organization_id"
        " FROM video_playback v JOIN content c ON c.id = v.content_id"
        " ORDER BY v.content_id"
    ).fetchall()


def _constraint(conn: Conn, name: str) -> str | None:
    row = conn.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.conrelid = 'video_playback'::regclass AND c.conname = %s",
        (name,),
    ).fetchone()
    return None if row is None else str(row[0])


def test_the_store_writes_each_row_with_its_contents_organization(
    ledger_app: Ledger, conn: Conn
) -> None:
    results = append(
        ledger_app,
        *_two_organizations(),
        play("alice", 30, at=t(3)),
        play("alice", 60, content_id=CONTENT_2, at=t(3)),
        play("alice", 20, at=t(2, 13)),  # older: the row keeps 30
    )
    assert {r.status for r in results} == {"accepted"}
    assert _shown(conn) == [
        ("alice", CONTENT, ORG, 30, True),
        ("alice", CONTENT_2, ORG_2, 60, True),
    ]


def _shape(conn: Conn) -> dict[str, Any]:
    """video_playback's columns and constraints, and the store's statement, as defined."""
    columns = conn.execute(
        "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute"
        " WHERE attrelid = 'video_playback'::regclass AND attnum > 0 AND NOT attisdropped"
    ).fetchone()
    constraints = conn.execute(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'video_playback'::regclass ORDER BY 1"
    ).fetchall()
    statement = conn.execute("SELECT pg_get_functiondef('playback_record'::regproc)").fetchone()
    return {
        "columns": columns[0] if columns else None,
        "constraints": constraints,
        "statement": statement[0] if statement else None,
    }


def test_up_down_up_fills_the_organization_and_restores_the_old_shape(
    empty_settings: Settings,
) -> None:
    env = _env(empty_settings)
    with connect(empty_settings, autocommit=True) as conn:
        migrations.upgrade(conn, empty_settings.schema, to=25)
        old = _shape(conn)
    assert cli(env, "db", "upgrade").returncode == 0
    lines = [json.dumps(c) for c in _two_organizations()]
    lines += [json.dumps(play("alice", 40, at=t(3)))]
    assert {a["status"] for a in answers(cli(env, "append", stdin="\n".join(lines)).stdout)} == {
        "accepted"
    }
    key = "UNIQUE (organization_id, user_id, content_id)"
    reference = "FOREIGN KEY (organization_id, content_id) REFERENCES content(organization_id, id)"
    with connect(empty_settings, autocommit=True) as conn:
        assert _constraint(conn, "video_playback_user_id_content_id_unique") == key
        assert (_constraint(conn, "video_playback_content_id_fkey") or "").startswith(reference)
        assert _constraint(conn, "video_playback_pkey") == "PRIMARY KEY (organization_id, id)"
        assert _shape(conn)["statement"] != old["statement"]
        migrations.downgrade(conn, empty_settings.schema, to=25)
        assert _shape(conn) == old, "the rollback gives back 0024's table and statement"
        assert "organization_id" not in old["columns"]
        # a row of the other organization's video written under 0024's shape, as 0022's
        # statement writes it (no organization)
        conn.execute(
            "INSERT INTO video_playback (id, user_id, content_id, position_seconds,"
            " duration_seconds, completed, updated_at, created_at)"
            " VALUES (gen_random_uuid(), 'alice', %s, 70, 100, false, %s, %s)",
            (CONTENT_2, t(4), t(4)),
        )
        migrations.upgrade(conn, empty_settings.schema)
        assert _shown(conn) == [
            ("alice", CONTENT, ORG, 40, True),
            ("alice", CONTENT_2, ORG_2, 70, True),
        ]
        assert _constraint(conn, "video_playback_user_id_content_id_unique") == key
        # the same pair again, under another organization, is refused by the content's key
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO video_playback (user_id, content_id, organization_id,"
                " duration_seconds) VALUES ('alice', %s, %s, 100)",
                (CONTENT, ORG_2),
            )
    again = cli(env, "append", stdin=json.dumps(play("alice", 40, at=t(3))))
    assert [a["status"] for a in answers(again.stdout)] == ["duplicate"]
    newer = cli(env, "append", stdin=json.dumps(play("alice", 80, at=t(5))))
    assert [a["status"] for a in answers(newer.stdout)] == ["accepted"]
    with connect(empty_settings, autocommit=True) as conn:
        assert _shown(conn)[0] == ("alice", CONTENT, ORG, 80, True)


def _quiet_rebuild(settings: Settings, only: str | None = None) -> None:
    with open("/dev/null", "w") as quiet:
        rebuild(settings, stream=quiet, only=[only] if only else None)


def test_rebuilds_reproduce_the_rows_with_their_organization(
    ledger_app: Ledger, settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    append(
        ledger_app,
        *_two_organizations(),
        play("alice", 30, at=t(3)),
        play("alice", 96, content_id=CONTENT_2, at=t(3)),
        play("alice", 10, content_id=CONTENT_2, at=t(4)),  # newer, completed stays
    )
    before = dump_all(conn)
    assert len(before["video_playback"]) == 2
    placing_from_here()
    _quiet_rebuild(settings)
    assert dump_all(conn) == before
    _quiet_rebuild(settings, only="video_playback")
    assert dump_all(conn) == before
    assert _shown(conn) == [
        ("alice", CONTENT, ORG, 30, True),
        ("alice", CONTENT_2, ORG_2, 10, True),
    ]


@pytest.mark.parametrize("label", ["v2", "v3"])
def test_the_golden_logs_heartbeats_rebuild_with_their_organization_alone(
    settings: Settings, conn: Conn, label: str, placing_from_here: PlacingFromHere
) -> None:
    """``rebuild --only video_playback`` over a log that holds heartbeats: their content's
    organization read from the live content table."""
    from tests.integration.test_golden_log import _load
    from tests.integration.test_golden_v2 import stored

    _load(conn, stored(label))
    placing_from_here()
    _quiet_rebuild(settings)
    before = dump_all(conn)
    assert before["video_playback"], "the golden log holds heartbeats"
    _quiet_rebuild(settings, only="video_playback")
    assert dump_all(conn) == before
    mismatched = [r for r in _shown(conn) if not r[-1]]
    assert mismatched == []
