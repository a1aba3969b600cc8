"""The service logs a database error by its names, never by the data PostgreSQL quotes
(ledger/http/redaction.py; docs/privacy.md, "Every copy counts"): real errors of a real
server, each of a kind whose message quotes a value."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from ledger.http.redaction import WITHHELD, database_error, described

Conn = psycopg.Connection[Any]
PERSON = "alice@example.com"


def _error(conn: Conn, statement: str, *params: object) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        conn.execute(statement, params)
    return caught.value


def test_a_unique_violation_names_its_constraint_not_its_key(conn: Conn) -> None:
    conn.execute("CREATE TABLE people (email text CONSTRAINT people_email_key UNIQUE)")
    conn.execute("INSERT INTO people VALUES (%s)", (PERSON,))
    error = _error(conn, "INSERT INTO people VALUES (%s)", PERSON)
    assert PERSON in str(error)  # what psycopg would print: the DETAIL quotes the key
    line = database_error(error)
    assert PERSON not in line
    assert "SQLSTATE 23505" in line and "constraint people_email_key" in line
    assert "table people" in line and "UniqueViolation" in line


def test_a_data_exception_withholds_the_value_it_refused(conn: Conn) -> None:
    error = _error(conn, "SELECT %s::text::uuid", PERSON)
    assert PERSON in str(error)
    line = database_error(error)
    assert PERSON not in line and WITHHELD in line and "SQLSTATE 22P02" in line


def test_a_failing_row_and_a_wrapped_error_show_no_value(conn: Conn) -> None:
    conn.execute("CREATE TABLE adults (email text, age int CONSTRAINT adult CHECK (age >= 18))")
    error = _error(conn, "INSERT INTO adults VALUES (%s, 3)", PERSON)
    assert PERSON in str(error)  # "Failing row contains (alice@example.com, 3)"
    try:
        try:
            raise error
        except psycopg.Error as cause:
            raise IntegrityError(str(cause)) from cause  # as the eventsourcing library does
    except IntegrityError as wrapped:
        text = described(wrapped)
    assert PERSON not in text
    assert "constraint adult" in text and "IntegrityError: " + WITHHELD in text
    assert text.count("Traceback (most recent call last):") == 2
