"""Erasing a person registered before subjects (docs/privacy.md, "Older events"): the
golden log of version 3 names people in the clear. Erasure removes every row and stays
removed through a rebuild; `audit verify` says how many events still name someone in the
clear; the money stays; the id, registered again, starts a new person by subject."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from ledger import api
from ledger.audit.revenue import RevenueQuery, revenue
from ledger.config import Settings
from tests.integration.test_golden_log import _load
from tests.integration.test_golden_v2 import quiet_rebuild, stored, tables
from tests.support import append, cli, statuses

Conn = psycopg.Connection[Any]


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
        erase = {"type": "user.erase", "user_id": "gold_bob", "occurred_at": "2026-05-01T00:00:00Z"}
        assert statuses(append(app, erase)) == ["accepted"]
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
