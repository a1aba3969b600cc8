"""The golden log of version 4: a log of chains, with what it needs beside it.

``tests/fixtures/golden/v4`` was written by the version of issue 28 (``python -m
tests.fixtures.golden.make v4``): every event in its organization's chain or the platform's
(``organization_id``, ``position``), in the ``organization`` order a distributed log has, and
beside the events (``beside.json``) the tables without which the log cannot be read, rebuilt
or continued as it was: its order, the subjects (who each person is; an erased person has
none), and the playback store (heartbeats are no longer events; the rebuild folds the store's
compacted base and records). Loaded into a freshly migrated schema on one server (in a
distributed run then placed by ``ledger db distribute``, as a real upgrade does:
``test_golden_log.placed``), each chain must draw the positions and hashes it had, rebuild to
exactly its rows and verify; every command that wrote it, delivered again, changes nothing;
and the log goes on from its chains' heads.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ledger import api
from ledger.commands import demo
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.log import shapes
from ledger.playback import partitions
from tests.fixtures.golden import make
from tests.integration.test_golden_log import _by_id, _load, environment, placed
from tests.integration.test_golden_v2 import GOLDEN, quiet_rebuild, stored, tables
from tests.support import TABLES, append, cli, statuses

V4 = GOLDEN / "v4"
NO_LONGER_WRITTEN = {"PlaybackOpened", "PlaybackProgressed"}  # heartbeats: the store's since 0011


def beside() -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = json.loads((V4 / "beside.json").read_text("utf-8"))
    return rows


def load(conn: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    """v4 into ``schema`` (freshly migrated, ``conn`` in autocommit): the tables beside the
    log first (``make.BESIDE``'s order: the order, the subjects, the store, each emptied of
    what the migration put there, as the playback state's one row), the store's days'
    partitions made as the store makes them, its positions' sequence past the records';
    then the events (``_load``). Returns the stored events, each with the ``hash`` and
    ``position`` its chain's trigger drew on load (``loaded_hash``, ``loaded_position``)."""
    rows = beside()
    days: set[date] = {
        datetime.fromisoformat(r["occurred_at"]).date() for r in rows["playback_heartbeats"]
    }
    partitions.create(conn, schema, days)
    with conn.transaction():
        for table in make.BESIDE:
            name = sql.Identifier(table)
            conn.execute(sql.SQL("DELETE FROM {}").format(name))
            if not rows[table]:
                continue
            # the columns v4 wrote, by name: a column a later migration adds takes its
            # default, as it does for the rows a real upgrade finds
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in rows[table][0])
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} ({}) SELECT {} FROM jsonb_populate_recordset(NULL::{}, %s)"
                ).format(name, columns, columns, name),
                (Jsonb(rows[table]),),
            )
        conn.execute(
            "SELECT setval('playback_positions', max(position)) FROM playback_heartbeats"
            " HAVING count(*) > 0"
        )
    events = stored("v4")
    hashes = _load(conn, events)
    positions = [
        r[0] for r in conn.execute("SELECT position FROM ledger_events ORDER BY notification_id")
    ]
    return [
        {**e, "loaded_hash": h, "loaded_position": p}
        for e, h, p in zip(events, hashes, positions, strict=True)
    ]


def test_the_v4_golden_log_chains_rebuilds_and_verifies(fresh: Callable[[], Settings]) -> None:
    settings = fresh()
    events = stored("v4")
    states = [(e["topic"], json.loads(e["state"])) for e in events]
    assert {t for t, _ in states} == set(shapes.catalogue()) - NO_LONGER_WRITTEN, (
        "v4 holds every kind of event written today"
    )
    chains = Counter(e["organization_id"] for e in events)
    assert len(chains) == 7, "the platform's chain and six organizations'"
    revoked = [s for t, s in states if t == "AccessRevoked"]
    assert {s["class_version"] for s in revoked} == {3}
    assert None not in {s["organization_id"] for s in revoked}
    left = [s for t, s in states if t == "UserLeftOrganization"]
    erased = [s for t, s in states if t == "UserErased"]
    assert len(left) == 3 and len(erased) == 1  # the deleted person's one, the erased one's two
    assert make.ERASED not in (V4 / "events.jsonl").read_text("utf-8"), "ids never reach the log"

    with connect(settings, autocommit=True) as conn:
        loaded = load(conn, settings.schema)
        assert [e["loaded_position"] for e in loaded] == [e["position"] for e in loaded]
        drawn = [e["notification_id"] for e in loaded if e["loaded_hash"] != e["hash"]]
        assert drawn == [], f"the chains no longer reproduce the stored hashes at {drawn[:5]}"
        placed(settings, conn)
        quiet_rebuild(settings)
        expected = json.loads((V4 / "tables.json").read_text("utf-8"))
        got = tables(conn)
        for table in TABLES:
            assert got[table] == _by_id(expected[table]), table
        subject = erased[0]["user_id"]
        gone = conn.execute(
            "SELECT (SELECT count(*) FROM ledger_subjects WHERE subject = %(s)s OR user_id = %(u)s)"
            " + (SELECT count(*) FROM users WHERE id = %(u)s)"
            " + (SELECT count(*) FROM playback_heartbeats WHERE user_id = %(u)s)"
            " + (SELECT count(*) FROM playback_base WHERE user_id = %(u)s)",
            {"s": subject, "u": make.ERASED},
        ).fetchone()
        assert gone == (0,), "nothing leads from the erased person's id to their events"

    env = environment(settings)
    done = cli(env, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"all {len(events)} events decode" in done.stdout
    done = cli(env, "projections", "verify")
    assert done.returncode == 0, done.stdout + done.stderr


def test_redeliveries_of_the_commands_v4_recorded_change_nothing_and_its_chains_go_on(
    fresh: Callable[[], Settings],
) -> None:
    """The whole history that wrote v4, delivered again, is not applied twice: ``duplicate``;
    for the erased person ``not_found`` or ``conflict`` (their id names no one now:
    docs/privacy.md); a heartbeat dated before the store's compaction ``invalid_state`` (the
    base keeps its fold, not the record), or ``duplicate`` by its idempotency key, which
    outlives it; not one event, heartbeat or row more. Then a new command of the second
    organization takes the next position of its chain, and the log rebuilds to the rows the
    appends made."""
    settings = fresh()
    with connect(settings, autocommit=True) as conn:
        load(conn, settings.schema)
        quiet_rebuild(settings)
        placed(settings, conn)
        before = tables(conn)
        counted = (
            "SELECT (SELECT count(*) FROM ledger_events),"
            " (SELECT count(*) FROM playback_heartbeats)"
        )
        counts = conn.execute(counted).fetchone()
        answers, history = _redelivered(settings)
        assert "accepted" not in answers
        erased = {a for a, c in zip(answers, history, strict=True) if make.ERASED in c.values()}
        assert erased == {"rejected:not_found", "rejected:conflict"}, "their id names no one"
        others = [(a, c) for a, c in zip(answers, history, strict=True) if not _gone(c)]
        compacted = [(a, c) for a, c in others if _compacted(c)]
        assert [a for a, _ in compacted] == [
            "duplicate" if "idempotency_key" in c else "rejected:invalid_state"
            for _, c in compacted
        ], "before the store's horizon a heartbeat is known again only by its key"
        live = [a for a, c in others if not _compacted(c)]
        assert live.count("duplicate") > len(live) * 0.99
        assert conn.execute(counted).fetchone() == counts
        assert tables(conn) == before

        last = max(e["position"] for e in stored("v4") if e["organization_id"] == make.ORG_2)
        more = {
            "type": "access.grant",
            "user_id": "gold_erin",
            "content_id": make.VIDEO_3,
            "access_type": "preview",
            "occurred_at": "2026-04-01T10:00:00+00:00",
        }
        with api.open_ledger(settings) as app:
            assert statuses(append(app, more)) == ["accepted"]
        grown = [
            row[0]
            for row in conn.execute(
                "SELECT position FROM ledger_events WHERE organization_id = %s"
                " AND position > %s ORDER BY position",
                (make.ORG_2, last),
            )
        ]
        assert grown == list(range(last + 1, last + 1 + len(grown))) and grown, "its chain goes on"
        inline = tables(conn)
        quiet_rebuild(settings)
        assert tables(conn) == inline, "the rebuild of the continued log gives the rows made"
    done = cli(environment(settings), "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr


def _redelivered(settings: Settings) -> tuple[list[str], list[dict[str, Any]]]:
    """Every command that wrote v4 again, but the erased person's registration: their id is
    free, and registering it draws a new person (docs/privacy.md, "Erasure")."""
    history = [
        c
        for c in [*demo.history(purchases=120), *make._edges(), *make._lifted(), *make._chains()]
        if c != {"type": "user.register", "user_id": make.ERASED, "occurred_at": c["occurred_at"]}
    ]
    with api.open_ledger(settings) as app:
        return statuses(append(app, *history)), history


def _gone(command: dict[str, Any]) -> bool:
    """Whether the command names the deleted or the erased person."""
    return bool({"gold_carol", make.ERASED} & set(command.values()))


def _compacted(command: dict[str, Any]) -> bool:
    """A heartbeat dated before v4's compaction: the store keeps its fold, not its record."""
    at = datetime.fromisoformat(command["occurred_at"])
    return command["type"] == "playback.progress" and at < datetime.fromisoformat(
        make.COMPACTED_BEFORE
    )
