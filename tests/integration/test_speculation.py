"""Decisions on cached state: a wrong guess costs a retry, never a wrong answer.

A writer decides first on the aggregates it keeps between commands, without reading
the log (``UnitOfWork.speculative``). Each test makes that cache wrong through a
second writer, which stands for another process, and checks that the answer and
the rows are what a writer reading the log would produce.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.domain import ids
from ledger.service import Ledger
from tests.support import (
    CONTENT,
    append,
    catalogue,
    complete,
    event_count,
    grant,
    statuses,
    subject,
    user,
)

Conn = psycopg.Connection[Any]


@pytest.fixture
def other(settings: Settings) -> Iterator[Ledger]:
    app = api.open_ledger(settings)
    yield app
    app.close()


def test_a_customer_deleted_elsewhere_is_not_sold_to(
    ledger_app: Ledger, other: Ledger, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), complete("pi_1", customer="bob"))  # bob is cached
    assert statuses(append(other, {"type": "user.delete", "user_id": "bob"})) == ["accepted"]
    before = event_count(conn)
    assert statuses(append(ledger_app, complete("pi_2", customer="bob"))) == ["rejected:not_found"]
    assert event_count(conn) == before
    assert conn.execute(
        "SELECT count(*) FROM purchases WHERE stripe_payment_intent_id = 'pi_2'"
    ).fetchone() == (0,)


def test_a_payment_recorded_elsewhere_is_a_duplicate_or_a_conflict(
    ledger_app: Ledger, other: Ledger, conn: Conn
) -> None:
    append(ledger_app, *catalogue())
    assert statuses(append(other, complete("pi_1"))) == ["accepted"]
    before = event_count(conn)
    # ledger_app has never seen pi_1: its guess "absent" is refused by the log's key
    assert statuses(append(ledger_app, complete("pi_1"))) == ["duplicate"]
    assert statuses(append(ledger_app, complete("pi_1", amount=2999))) == ["rejected:conflict"]
    assert event_count(conn) == before
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)


def test_a_user_registered_elsewhere_is_found(ledger_app: Ledger, other: Ledger) -> None:
    append(ledger_app, *catalogue())
    append(other, user("carol"))
    assert statuses(append(ledger_app, complete("pi_1", customer="carol"))) == ["accepted"]


def test_an_append_that_fails_leaves_no_trace_in_the_cache(
    ledger_app: Ledger, other: Ledger, conn: Conn
) -> None:
    append(ledger_app, *catalogue(), grant("bob"))  # the access aggregate is cached
    access_id = ids.access_id(subject(conn, "bob"), CONTENT)
    extended = grant("bob", at="2026-01-03T12:00:00+00:00", expires="2027-01-01T00:00:00+00:00")
    assert statuses(append(other, extended)) == ["accepted"]
    # decided on the cached grant, refused by the log's key (the other writer took
    # that version), decided again on the log: the revoke applies to the new grant
    revoke = {
        "type": "access.revoke",
        "user_id": "bob",
        "content_id": CONTENT,
        "occurred_at": "2026-01-04T12:00:00+00:00",
    }
    assert statuses(append(ledger_app, revoke)) == ["accepted"]
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (0,)
    cached = ledger_app.aggregates.cached([access_id])[access_id]
    assert cached is not None
    assert cached.version == ledger_app.repository.get(access_id).version
