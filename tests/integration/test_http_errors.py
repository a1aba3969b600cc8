"""The 500 path of the real service: an unexpected error, and a database error that is
not a connection problem, answer ``internal_error`` with a fixed message (no traceback,
no exception name, no SQL), are logged on the server, append nothing, and leave the
service, and the client's connection, serving the next request.

The unexpected error is planted by tests/faulty_serve.py (a pure function patched in the
server's own process); the database errors are real ones, from a table of the test's
schema renamed under the running service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import psycopg

from ledger.config import Settings
from tests.faulty_serve import FAULT, LEAK
from tests.serving import Served, serve
from tests.support import CONTENT, catalogue, complete, user

Conn = psycopg.Connection[Any]
FAULTY = Path(__file__).resolve().parents[1] / "faulty_serve.py"
UNEXPECTED = {
    "status": "rejected",
    "error": {
        "code": "internal_error",
        "message": "an unexpected error stopped the request; it was logged",
    },
}
DATABASE = {
    "status": "rejected",
    "error": {
        "code": "internal_error",
        "message": "a database error stopped the request; it was logged",
    },
}
# what a 500 must never show: a traceback, an exception's class, SQL or a table's name
SECRETS = ("Traceback", "Error", "SELECT", "INSERT", "relation", "ledger_events", "psycopg")


def events(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
    assert row is not None
    return int(row[0])


def local_port(answer: httpx.Response) -> int:
    """The client's end of the connection the answer came on."""
    return int(answer.extensions["network_stream"].get_extra_info("client_addr")[1])


def in_flight(served: Served) -> float:
    with served.client(None) as probe:
        text = probe.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("ledger_http_requests_in_flight "))
    return float(line.split()[1])


def assert_hidden(answer: httpx.Response) -> None:
    for secret in SECRETS:
        assert secret not in answer.text, secret


def test_an_unexpected_error_answers_500_and_the_connection_serves_the_next(
    settings: Settings, conn: Conn
) -> None:
    with serve(settings, FAULTY) as served, served.client() as client:
        setup = client.post("/v1/commands/batch", json=catalogue()).json()
        assert {a["status"] for a in setup} == {"accepted"}
        before = events(conn)

        failed = client.post(
            "/v1/commands", json=complete("pi_1"), headers={"X-Request-Id": f"{FAULT}1"}
        )
        assert failed.status_code == 500
        assert failed.json() == UNEXPECTED
        assert failed.headers["content-type"] == "application/json"
        assert failed.headers["x-request-id"] == f"{FAULT}1"  # as every answer does
        assert_hidden(failed)
        assert "LookupError" not in failed.text and "planted" not in failed.text

        batch = client.post(
            "/v1/commands/batch?atomic=true",
            json=[complete("pi_2"), complete("pi_3", customer="bob")],
            headers={"X-Request-Id": f"{FAULT}2"},
        )
        assert batch.status_code == 500 and batch.json() == UNEXPECTED
        assert batch.headers["x-request-id"] == f"{FAULT}2"
        assert events(conn) == before  # nothing of either was appended

        # the same client, on the same keep-alive connection: the service still answers,
        # and the command is new to it (accepted, not a duplicate)
        retried = client.post("/v1/commands", json=complete("pi_1"))
        assert retried.status_code == 201, retried.text
        assert retried.json()["status"] == "accepted"
        assert local_port(retried) == local_port(failed) == local_port(batch)
        assert events(conn) > before
        assert in_flight(served) == 0  # the gate let the failed requests go

    log = served.log()
    assert f"unexpected error (request {FAULT}1)" in log
    assert f"unexpected error (request {FAULT}2)" in log
    assert f"LookupError: {LEAK} for {FAULT}1" in log  # the operator sees what happened
    assert "Exception in ASGI application" not in log  # no connection was dropped


def test_a_database_error_on_a_read_answers_500_without_its_sql(
    settings: Settings, conn: Conn
) -> None:
    with serve(settings) as served, served.client() as client:
        client.post("/v1/commands/batch", json=[*catalogue(), complete("pi_1")])
        path = f"/v1/access/alice/{CONTENT}"
        assert client.get(path).json()["allowed"] is True
        before = events(conn)

        conn.execute("ALTER TABLE content_access RENAME TO content_access_away")
        failed = client.get(path, headers={"X-Request-Id": "read-1"})
        assert failed.status_code == 500
        assert failed.json() == DATABASE
        assert failed.headers["x-request-id"] == "read-1"
        assert_hidden(failed)
        assert "content_access" not in failed.text

        conn.execute("ALTER TABLE content_access_away RENAME TO content_access")
        again = client.get(path)
        assert again.status_code == 200
        assert again.json() == {"allowed": True, "access_type": "purchased", "expires_at": None}
        assert local_port(again) == local_port(failed)
        assert events(conn) == before
    log = served.log()
    assert "database error" in log
    assert "UndefinedTable" in log and "content_access" in log  # for the operator only


def test_a_database_error_on_an_append_answers_500_and_appends_nothing(
    settings: Settings, conn: Conn
) -> None:
    with serve(settings) as served, served.client() as client:
        client.post("/v1/commands/batch", json=catalogue())
        before = events(conn)

        # the purchase's row cannot be written: its transaction, events and all, rolls back
        conn.execute("ALTER TABLE purchases RENAME TO purchases_away")
        failed = client.post("/v1/commands", json=complete("pi_1"))
        assert failed.status_code == 500
        assert failed.json() == DATABASE
        assert_hidden(failed)
        assert "purchases" not in failed.text
        assert events(conn) == before

        conn.execute("ALTER TABLE purchases_away RENAME TO purchases")
        retried = client.post("/v1/commands", json=complete("pi_1"))
        assert retried.status_code == 201, retried.text
        assert retried.json()["status"] == "accepted"  # the failed attempt left no trace
        assert conn.execute("SELECT stripe_payment_intent_id FROM purchases").fetchall() == [
            ("pi_1",)
        ]
    log = served.log()
    assert "database error" in log and "purchases" in log


def test_a_database_error_is_logged_by_its_names_never_by_a_row_s_values(
    settings: Settings, conn: Conn
) -> None:
    """PostgreSQL's DETAIL quotes the key that clashed; the service's log must not, or an
    erased person's id would outlive them there (docs/privacy.md, "Every copy counts"). The
    key includes the organization, so that Citus accepts it on a distributed table too."""
    person = "erasable-person-7f3a"
    conn.execute(
        "ALTER TABLE purchases ADD CONSTRAINT one_purchase_each"
        " UNIQUE (organization_id, customer_id)"
    )
    with serve(settings) as served, served.client() as client:
        client.post("/v1/commands/batch", json=[*catalogue(), user(person)])
        first = client.post("/v1/commands", json=complete("pi_1", customer=person))
        assert first.json()["status"] == "accepted", first.text
        failed = client.post("/v1/commands", json=complete("pi_2", customer=person))
        assert failed.status_code == 500
        assert_hidden(failed)
    log = served.log()
    # a conflict that never clears: retried, then given up, naming the constraint as cause
    assert "gave up after 20 concurrent conflicts" in log
    # the operator's: on the distributed layout the constraint is its shard's, named
    # one_purchase_each_<shard id> by Citus
    assert "SQLSTATE 23505" in log and re.search(r'constraint "?one_purchase_each', log)
    assert "UniqueViolation" in log and "Traceback (most recent call last)" in log
    assert person not in log  # never the key's value
    assert "DETAIL" not in log
