"""No role can store an event that does not decode; the readers name one stored behind
the trigger's back (by a superuser) in one line.

The database's catalogue is kept equal to the event classes (``ledger.log.shapes``),
and the trigger and the Python check agree on every state (a property test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from ledger.config import Settings
from ledger.domain import upcasters
from ledger.log import shapes
from ledger.service import Ledger
from ledger.upkeep.rebuild import rebuild
from tests.citus_support import PlacingFromHere
from tests.integration.test_golden_log import golden_tables
from tests.support import TABLES, cli, load_history

Conn = psycopg.Connection[Any]
GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden" / "v1"
INSERT = (
    "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
    " VALUES (gen_random_uuid(), 1, %s, %s)"
)
SAMPLE = {"string": "x", "integer": 7, "boolean": True, "null": None, "object": {}}


def valid_state(topic: str) -> dict[str, Any]:
    """A state of the topic's current version, which a new event must be."""
    state = {name: SAMPLE[kinds[0]] for name, kinds in shapes.catalogue()[topic].items()}
    return {**state, "class_version": upcasters.current_version(topic)}


def insert(conn: Conn, topic: str, state: bytes) -> None:
    with conn.transaction():
        conn.execute(INSERT, (topic, state))


def test_the_catalogue_in_the_database_is_the_event_classes(conn: Conn) -> None:
    """Every version of every topic: the current one from its class, each earlier one
    from its upcasters; only the current ones are not superseded."""
    stored = {
        (topic, version): (fields, shape)
        for topic, version, fields, shape in conn.execute(
            "SELECT topic, version, fields, shape::text FROM ledger_event_catalogue"
        )
    }
    expected = shapes.versions()
    assert set(stored) == set(expected)
    current = conn.execute(
        "SELECT topic, version FROM ledger_event_catalogue WHERE superseded_at IS NULL"
    ).fetchall()
    assert sorted(current) == sorted(
        (topic, upcasters.current_version(topic)) for topic in shapes.catalogue()
    )
    for (topic, version), required in expected.items():
        fields, shape = stored[(topic, version)]
        assert fields == {k: list(v) for k, v in required.items()}, (topic, version)
        rendered = conn.execute(
            "SELECT %s::jsonpath::text", (shapes.jsonpath(required),)
        ).fetchone()
        assert rendered == (shape,), (topic, version)


def test_required_fields_are_those_every_stored_version_carries() -> None:
    """The log of the previous version (the golden log) carries every required field:
    a field added later must come with a default, so old events still decode."""
    for row in GOLDEN.joinpath("events.jsonl").read_text().splitlines():
        stored = json.loads(row)
        shapes.check(stored["notification_id"], stored["topic"], stored["state"].encode())


@pytest.mark.parametrize("topic", sorted(shapes.catalogue()))
def test_the_trigger_refuses_each_missing_or_mistyped_field(conn: Conn, topic: str) -> None:
    insert(conn, topic, orjson.dumps(valid_state(topic)))
    for name, kinds in shapes.catalogue()[topic].items():
        missing = valid_state(topic)
        del missing[name]
        with pytest.raises(psycopg.errors.DataException, match=f"the field {name} is missing"):
            insert(conn, topic, orjson.dumps(missing))
        wrong = valid_state(topic)
        wrong[name] = [] if "array" not in kinds else "x"
        with pytest.raises(psycopg.errors.DataException, match=f"the field {name} is not"):
            insert(conn, topic, orjson.dumps(wrong))


@pytest.mark.parametrize(
    ("topic", "state", "message"),
    [
        ("PurchaseCompleted", b'{"garbage": true}', "the field"),
        ("NoSuchTopic", b"{}", "not in the event catalogue"),
        ("UserRegistered", b"[1, 2]", "not a JSON object"),
        ("UserRegistered", b"\xff\xfe", "invalid byte sequence"),
        ("UserRegistered", b"{not json", "invalid input syntax"),
    ],
)
def test_the_trigger_refuses_what_does_not_decode(
    conn: Conn, topic: str, state: bytes, message: str
) -> None:
    before = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
    with pytest.raises(psycopg.Error, match=message):
        insert(conn, topic, state)
    assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == before


# PostgreSQL's jsonb holds no NUL character, in a value or a key: the insert fails before any
# check, so no reader ever sees one
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_characters="\x00"), max_size=5),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(
            st.text(st.characters(blacklist_characters="\x00"), max_size=3), inner, max_size=2
        )
    ),
    max_leaves=4,
)


@st.composite
def states(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    topic = draw(st.sampled_from(sorted(shapes.catalogue())))
    state = valid_state(topic)
    for name in draw(st.lists(st.sampled_from(sorted(state)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del state[name]
        else:
            state[name] = draw(JSON)
    return topic, state


@given(states())
def test_the_trigger_and_the_readers_agree_on_every_state(
    conn: Conn, drawn: tuple[str, dict[str, Any]]
) -> None:
    """What the database accepts as a new event, every reader decodes; what a reader
    refuses as a new event, the database refused: the two checks are the same rule."""
    topic, state = drawn
    stored = json.dumps(state).encode()
    try:
        insert(conn, topic, stored)
        accepted = True
    except psycopg.errors.DataException:
        accepted = False
    assert accepted == (shapes.problem(topic, stored, new=True) is None), (topic, state)


def load_golden(conn: Conn) -> int:
    """The golden log's rows stored as they were (positions, times), through the triggers:
    every one passes the shape check and chains to the very hash it had."""
    rows = [json.loads(line) for line in GOLDEN.joinpath("events.jsonl").read_text().splitlines()]
    with conn.transaction():
        for row in rows:
            stored = conn.execute(
                "INSERT INTO ledger_events (notification_id, originator_id, originator_version,"
                " topic, state, recorded_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " RETURNING encode(hash, 'hex')",
                (
                    row["notification_id"],
                    row["originator_id"],
                    row["originator_version"],
                    row["topic"],
                    row["state"].encode(),
                    row["recorded_at"],
                ),
            ).fetchone()
            assert stored == (row["hash"],), row["notification_id"]
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('ledger_events', 'notification_id'), %s)",
            (rows[-1]["notification_id"],),
        )
    return len(rows)


def test_the_golden_log_is_accepted_and_rebuilds_exactly(
    settings: Settings, conn: Conn, cli_env: dict[str, str], placing_from_here: PlacingFromHere
) -> None:
    load_golden(conn)
    placing_from_here()
    rebuild(settings, stream=open("/dev/null", "w"))  # noqa: SIM115
    conn.execute("SET TimeZone TO 'UTC'")
    expected = golden_tables(GOLDEN / "tables.json")
    for table in TABLES:
        rows = [
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT to_jsonb(t) FROM {} t ORDER BY id").format(sql.Identifier(table))
            )
        ]
        assert rows == expected[table], table
    done = cli(cli_env, "audit", "verify")
    assert done.returncode == 0, done.stdout
    assert "ok   events: all 1242 events decode" in done.stdout


def test_the_writer_role_cannot_store_garbage(
    settings: Settings, conn: Conn, placing_from_here: PlacingFromHere
) -> None:
    """The issue's attack, as the writer role: refused at insert, nothing stored."""
    import uuid

    from ledger.database.roles import create_roles, role_names
    from tests.integration.test_roles import drop_roles

    prefix = f"g{uuid.uuid4().hex[:8]}"
    placing_from_here()  # the roles' DDL and grants, on every node
    try:
        names = create_roles(conn, settings.schema, prefix, login=True)
        url = psycopg.conninfo.make_conninfo(settings.url, user=names["writer"])
        with psycopg.connect(url, autocommit=True) as writer:
            writer.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
            with pytest.raises(psycopg.errors.DataException, match="refusing an event"):
                writer.execute(INSERT, ("PurchaseCompleted", b'{"garbage":true}'))
            writer.execute(INSERT, ("UserRegistered", orjson.dumps(valid_state("UserRegistered"))))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute("UPDATE ledger_event_catalogue SET shape = 'true'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute(
                    "ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_check_shape"
                )
        assert conn.execute("SELECT topic FROM ledger_events").fetchall() == [("UserRegistered",)]
    finally:
        drop_roles(settings, role_names(prefix).values())


def smuggle(conn: Conn, topic: str, state: bytes) -> int:
    """What only a superuser can do: store an event with the shape trigger off (on a
    distributed log Citus takes a trigger's change only with its unsafe triggers allowed,
    as ``ledger db distribute`` does: a placeholder setting on one server)."""
    with conn.transaction():
        conn.execute("SET LOCAL citus.enable_unsafe_triggers = on")
        conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_check_shape")
        row = conn.execute(INSERT + " RETURNING notification_id", (topic, state)).fetchone()
        conn.execute("ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_check_shape")
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("topic", "state", "problem"),
    [
        ("PurchaseCompleted", b'{"garbage": true}', "the field timestamp is missing"),
        ("PurchaseCompleted", b"\xff not json", "its state is not UTF-8 JSON"),
        ("PurchaseRefunded", b'"a string"', "its state is not a JSON object"),
    ],
    ids=["garbage", "not-json", "not-an-object"],
)
def test_every_reader_names_an_undecodable_event_in_one_line(
    ledger_app: Ledger,
    conn: Conn,
    cli_env: dict[str, str],
    topic: str,
    state: bytes,
    problem: str,
    placing_from_here: PlacingFromHere,
) -> None:
    load_history(ledger_app, 10)
    placing_from_here()  # the trigger's switch, then a rebuild and a verify
    position = smuggle(conn, topic, state)
    named = f"position {position} ({topic}) does not decode: {problem}"
    for args, status in (
        (("projections", "rebuild"), 2),
        (("audit", "revenue"), 2),
        (("audit", "revenue", "--format", "json", "--group-by", "month"), 2),
        (("projections", "verify"), 1),
    ):
        done = cli(cli_env, *args)
        assert done.returncode == status, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        out = done.stderr if status == 2 else done.stdout
        assert named in out, (args, out)
        if status == 2:
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    audit = cli(cli_env, "audit", "verify")
    assert audit.returncode == 1
    # audit verify names it by its chain (the platform's: smuggled without an organization)
    row = conn.execute(
        "SELECT position FROM ledger_events WHERE notification_id = %s", (position,)
    ).fetchone()
    assert row is not None
    in_chain = f"position {row[0]} of the platform's chain ({topic}) does not decode: {problem}"
    assert f"FAIL events: the event at {in_chain}" in audit.stdout
    assert "ok   guards" in audit.stdout  # the trigger is back: only the event tells
