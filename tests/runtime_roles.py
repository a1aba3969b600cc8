"""The runtime roles of a test's schema (``ledger db roles``): made for a test and dropped
after it with its schema, a Settings logging in as one, and a history written as the writer
(``test_roles*.py``, ``test_erasure_roles.py``, ``test_shared_keys.py``, ``test_log_order.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ledger import api
from ledger.config import Settings
from ledger.database.connections import connect
from ledger.database.roles import create_roles
from tests.support import (
    CONTENT_2,
    ORG_2,
    append,
    catalogue,
    complete,
    grant,
    org,
    play,
    publish,
    user,
)

Conn = psycopg.Connection[Any]


@pytest.fixture
def roles(settings: Settings) -> Iterator[dict[str, str]]:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    with connect(settings, autocommit=True) as conn:
        names = create_roles(conn, settings.schema, prefix, login=True)
    yield names
    drop_roles(settings, [*names.values(), f"{prefix}_bound_a", f"{prefix}_bound_b"])


def drop_roles(settings: Settings, names: Iterable[str]) -> None:
    """The test's schema first (its objects), then the roles and what they still own,
    taking turns with ``ledger db roles`` elsewhere (both change the database's grants)."""
    with psycopg.connect(settings.url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ledger db roles'))")
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.schema))
        )
        for name in names:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def as_role(settings: Settings, role: str) -> Settings:
    return Settings(url=make_conninfo(settings.url, user=role), schema=settings.schema)


def seed(settings: Settings, roles: dict[str, str]) -> None:
    with api.open_ledger(as_role(settings, roles["writer"])) as app:
        results = append(
            app,
            *catalogue(),
            org(ORG_2, "Other"),
            user("carol"),
            publish(CONTENT_2, ORG_2, title="Theirs"),
            complete("pi_1"),
            complete("pi_2", customer="carol", content_id=CONTENT_2),
            grant("bob"),
            play("alice", 10),
        )
    assert {r.status for r in results} == {"accepted"}
