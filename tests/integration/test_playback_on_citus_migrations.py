"""The playback store's migration 0026 on Citus: a schema distributed before it is upgraded
and its tables placed beside their content, and 0026 rolls back and forth on the distributed
layout (the migrations' part of ``test_playback_on_citus.py``).
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger import api
from ledger.config import Settings
from ledger.database import distribution, migrations, store_placement
from ledger.database.connections import connect
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.playback_on_citus import VIDEO_B, _distributed, alice_granted_video_b
from tests.support import play, t

pytestmark = pytest.mark.citus

Conn = psycopg.Connection[Any]


def test_a_schema_distributed_before_0026_is_upgraded_and_placed_beside_content(
    citus: CitusCluster, empty_settings: Settings
) -> None:
    """The layout of before migration 0026 (video_playback on the coordinator, without its
    key to the distributed content): the upgrade fills each row's organization from the
    distributed content, and `ledger db distribute` then places video_playback beside it
    with its key to content, rows kept."""
    settings = empty_settings
    schema = settings.schema
    first, second = (str(o) for o in islice(citus_support.organizations(), 2))
    videos = {first: "aaaaaaaa-0000-4000-8000-000000000001", second: VIDEO_B}
    with psycopg.connect(settings.url, autocommit=True) as conn:
        migrations.upgrade(conn, schema, to=25)
    with psycopg.connect(settings.url) as conn:
        # what `ledger db distribute` did at 0024: video_playback's key to content dropped,
        # the money tables, the log and the store placed, video_playback left behind
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute("ALTER TABLE video_playback DROP CONSTRAINT video_playback_content_id_fkey")
        # (organizations a reference table then: distributed by its id since i28o)
        wanted: dict[str, distribution.Place] = {t: "reference" for t in ("users", "organizations")}
        wanted |= {t: "distributed" for t in ("content", "purchases", "content_access")}
        distribution._place(conn, schema, distribution.places(conn, schema), wanted)
        distribution.distribute_log(conn, schema)
        store_placement.distribute_store(conn, schema)
        conn.commit()
    with psycopg.connect(settings.url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute("INSERT INTO users (id) VALUES ('alice')")
        for organization, video in videos.items():
            conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'org')", (organization,))
            conn.execute(
                "INSERT INTO content (id, organization_id, title) VALUES (%s, %s, 'v')",
                (video, organization),
            )
            conn.execute(
                "INSERT INTO video_playback (id, user_id, content_id, position_seconds,"
                " duration_seconds) VALUES (gen_random_uuid(), 'alice', %s, 5, 10)",
                (video,),
            )
        assert distribution.places(conn, schema)["video_playback"] == "local"
    api.upgrade(settings)
    with connect(settings) as conn:
        distribution.distribute(conn, schema)
        conn.commit()
    with connect(settings, autocommit=True) as conn:
        assert distribution.places(conn, schema)["video_playback"] == "distributed"
        rows = conn.execute(
            "SELECT content_id::text, organization_id::text FROM video_playback"
        ).fetchall()
        assert sorted(rows) == sorted((v, o) for o, v in videos.items())
        key = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'video_playback'::regclass"
            " AND conname = 'video_playback_content_id_fkey'"
        ).fetchone()
        assert key is not None and key[0].startswith(
            "FOREIGN KEY (organization_id, content_id) REFERENCES content(organization_id, id)"
        )
        table = f"{schema}.video_playback"
        for organization in videos:
            here = citus.placement(conn, table, organization)
            assert here.worker == citus.placement(conn, f"{schema}.content", organization).worker
            assert citus.count_on_worker(here, "organization_id", organization) == 1


def test_0026_rolls_back_and_forth_on_the_distributed_layout(
    settings: Settings, conn: Conn
) -> None:
    """The rollback brings video_playback back to the coordinator without its organization
    (0024's layout), rows kept; the upgrade fills it again from the distributed content and
    `ledger db distribute` places it beside content again."""
    _distributed(settings)
    organization = str(next(citus_support.organizations()))
    app = api.open_ledger(settings)
    try:
        alice_granted_video_b(app, organization, play("alice", 10, content_id=VIDEO_B, at=t(5)))
    finally:
        app.close()
    with connect(settings) as down:
        migrations.downgrade(down, settings.schema, to=25)
        down.commit()
    assert distribution.places(conn, settings.schema)["video_playback"] == "local"
    columns = conn.execute(
        "SELECT array_agg(attname::text) FROM pg_attribute"
        " WHERE attrelid = 'video_playback'::regclass AND attnum > 0 AND NOT attisdropped"
    ).fetchone()
    assert columns is not None and "organization_id" not in columns[0]
    assert conn.execute("SELECT user_id, position_seconds FROM video_playback").fetchall() == [
        ("alice", 10)
    ]
    api.upgrade(settings)
    _distributed(settings)
    assert distribution.places(conn, settings.schema)["video_playback"] == "distributed"
    rows = conn.execute(
        "SELECT user_id, organization_id::text, position_seconds FROM video_playback"
    ).fetchall()
    assert rows == [("alice", organization, 10)]
