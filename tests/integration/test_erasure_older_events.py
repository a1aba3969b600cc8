"""Erasing a person registered before subjects (docs/privacy.md, "Older events"): the
golden log of version 3 names people in the clear. Erasure removes every row and stays
removed through a rebuild; `audit verify` says how many events still name someone in the
clear; the money stays; the id, registered again, starts a new person by subject."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.audit.revenue import RevenueQuery, revenue
from ledger.config import Settings
from ledger.privacy import older
from tests.fixtures.golden import make
from tests.integration.test_golden_log import _load
from tests.integration.test_golden_v2 import quiet_rebuild, stored, tables
from tests.serving import serve
from tests.support import append, cli, play, statuses

Conn = psycopg.Connection[Any]
PERSON = ("user_id", "customer_id", "creator_id")


def naming(conn: Conn, user_id: str) -> list[int]:
    """The positions of the events naming ``user_id`` in a person's field, read here
    without the product's search (every event parsed)."""
    rows = conn.execute(
        "SELECT notification_id, convert_from(state, 'UTF8') FROM ledger_events"
        " ORDER BY notification_id"
    ).fetchall()
    return [n for n, state in rows if user_id in (json.loads(state).get(f) for f in PERSON)]


def test_a_person_of_the_older_log_is_erased_as_far_as_it_can_be(
    settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    _load(conn, stored("v3"))
    quiet_rebuild(settings)
    before = revenue(conn, settings.schema, RevenueQuery()).as_dict()
    assert conn.execute(
        "SELECT count(*) FROM purchases WHERE customer_id = 'gold_bob'"
    ).fetchone() != (0,)
    with api.open_ledger(settings) as app:
        # the older person is found by their id, as their events name them
        # a heartbeat of theirs in the playback store (which names people by id)
        beat = {**play("gold_bob", 50, content_id=make.VIDEO, at="2026-04-30T10:00:00+00:00")}
        assert statuses(append(app, {**beat, "idempotency_key": "gold-beat"})) == ["accepted"]
        erase = {"type": "user.erase", "user_id": "gold_bob", "occurred_at": "2026-05-01T00:00:00Z"}
        [erased] = append(app, erase)
        assert erased.status == "accepted"
        # the answer says which events still name them: the older ones and the erasure's
        named = naming(conn, "gold_bob")
        assert named[-1] == erased.position and len(named) > 2
        assert erased.as_dict()["older_events"] == {
            "count": len(named),
            "first": named,
            "listed_by": "ledger users older-events gold_bob",
        }
        for table in ("playback_heartbeats", "playback_base", "video_playback"):
            query = f"SELECT count(*) FROM {table} WHERE user_id = 'gold_bob'"
            assert conn.execute(query).fetchone() == (0,), table
        key = "SELECT count(*) FROM playback_keys WHERE idempotency_key = 'gold-beat'"
        assert conn.execute(key).fetchone() == (0,)
        assert statuses(append(app, erase)) == ["rejected:not_found"]  # documented
        inline = tables(conn)
        for table, column in (("users", "id"), ("purchases", "customer_id")):
            query = f"SELECT count(*) FROM {table} WHERE {column} = 'gold_bob'"
            assert conn.execute(query).fetchone() == (0,)
        assert revenue(conn, settings.schema, RevenueQuery()).as_dict() == before
        quiet_rebuild(settings)
        assert tables(conn) == inline, "the rebuild keeps the older person erased"
        # the id is free: a new person, by subject
        again = {
            "type": "user.register",
            "user_id": "gold_bob",
            "occurred_at": "2026-05-02T00:00:00Z",
        }
        assert statuses(append(app, again)) == ["accepted"]
    subject = conn.execute(
        "SELECT subject FROM ledger_subjects WHERE user_id = 'gold_bob'"
    ).fetchone()
    assert subject is not None and str(subject[0]).startswith("subject:")
    done = cli(cli_env, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    [note] = [line for line in done.stdout.splitlines() if "identities" in line]
    assert note.startswith("note identities: ") and "in the clear" in note
    assert int(note.split(": ", 1)[1].split()[0]) > 0
    assert cli(cli_env, "projections", "verify").returncode == 0
    exported = cli(cli_env, "users", "export", "gold_bob")
    assert exported.returncode == 0
    assert json.loads(exported.stdout)["purchases"] == []  # the new person has none


def test_the_older_events_answer_is_bounded_and_listed_in_full(
    settings: Settings,
    conn: Conn,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A person with more older events than an answer lists: the count and the first
    ``LISTED``; ``ledger users older-events`` and its HTTP twin list them all, by pages."""
    _load(conn, stored("v3"))
    quiet_rebuild(settings)
    monkeypatch.setattr(older, "LISTED", 2)
    with api.open_ledger(settings) as app:
        erase = {"type": "user.erase", "user_id": "gold_bob", "occurred_at": "2026-05-01T00:00:00Z"}
        [erased] = append(app, erase)
        # a person registered by subject: no older event names them, no field
        [fresh] = append(
            app,
            {"type": "user.register", "user_id": "new_dan", "occurred_at": "2026-05-01T01:00:00Z"},
            {"type": "user.erase", "user_id": "new_dan", "occurred_at": "2026-05-01T02:00:00Z"},
        )[1:]
    assert fresh.status == "accepted" and "older_events" not in fresh.as_dict()
    named = naming(conn, "gold_bob")
    answer = erased.as_dict()["older_events"]
    assert answer["count"] == len(named) > 2 and answer["first"] == named[:2]
    listed = cli(cli_env, "users", "older-events", "gold_bob")
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [line["position"] for line in lines] == named
    assert lines[-1]["topic"] == "UserErased"
    later = cli(cli_env, "users", "older-events", "gold_bob", "--after", str(named[1]))
    assert [json.loads(line)["position"] for line in later.stdout.splitlines()] == named[2:]
    assert cli(cli_env, "users", "older-events", "new_dan").stdout == ""
    bad = cli(cli_env, "users", "older-events", "gold_bob", "--after", "-1")
    assert bad.returncode == 2 and "--after" in bad.stderr
    with serve(settings, LEDGER_API_TOKENS="full-token") as served:  # noqa: SIM117
        with served.client("full-token") as client:
            pages: list[int] = []
            after = 0
            while True:
                page = client.get(f"/v1/users/gold_bob/older-events?after={after}&limit=2")
                assert page.status_code == 200, page.text
                pages += [e["position"] for e in page.json()["events"]]
                if page.json()["next_after"] is None:
                    break
                after = page.json()["next_after"]
            assert pages == named
            erase_carol = {
                "type": "user.erase",
                "user_id": "gold_carol",
                "occurred_at": "2026-05-02T00:00:00Z",
            }
            done = client.post("/v1/commands", json=erase_carol)
            assert done.status_code == 201, done.text
            carol = naming(conn, "gold_carol")
            assert done.json()["older_events"] == {
                "count": len(carol),
                "first": carol,
                "listed_by": "ledger users older-events gold_carol",
            }


def test_the_way_out_is_made_of_steps_the_product_has(
    settings: Settings,
    conn: Conn,
    cli_env: dict[str, str],
    fresh: Callable[[], Settings],
    tmp_path: Path,
) -> None:
    """docs/privacy.md, "Older events": the old head recorded outside the database, the
    log exported whole, and a fresh ledger whose first event anchors the old head (the
    first command's idempotency key), found again by ``ledger events``."""
    _load(conn, stored("v3"))
    quiet_rebuild(settings)
    heads = tmp_path / "heads"
    recorded = cli(cli_env, "audit", "verify", "--record-head", str(heads))
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    head = heads.read_text().split()[0]  # POSITION:HASH  # verified TIME
    position, digest = head.split(":")
    exported = cli(cli_env, "events")
    assert exported.returncode == 0
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert lines[-1]["position"] == int(position) and len(lines) == int(position)
    anchor = f"chain-anchor:{position}:{digest}"
    copy = fresh()
    with api.open_ledger(copy) as app:
        first = {
            "type": "organization.register",
            "organization_id": make.ORG,
            "name": "Gold",
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "idempotency_key": anchor,
        }
        assert statuses(append(app, first)) == ["accepted"]
    copied = {**cli_env, "LEDGER_SCHEMA": copy.schema}
    found = cli(copied, "events", "--idempotency-key", anchor)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout.splitlines()[0])["position"] == 1
