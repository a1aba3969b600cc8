"""ledger audit verify: an intact log passes; each kind of tampering by a superuser is named."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from ledger.audit.chain import GENESIS, event_hash
from ledger.commands import demo
from ledger.config import Settings
from ledger.database import distribution
from ledger.service import Ledger
from tests.support import cli, load_history

Conn = psycopg.Connection[Any]


def verify(cli_env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    done = cli(cli_env, "audit", "verify", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, done.stdout.splitlines()


def line(lines: list[str], check: str) -> str:
    return next(x for x in lines if x[5:].startswith(check + ":"))


def chain_line(lines: list[str], organization: Any) -> str:
    return next(
        x for x in lines if x[5:].startswith(f"log: the chain of organization {organization}:")
    )


AT = "organization_id = %(chain)s AND position = %(at)s"
EDIT = "UPDATE ledger_events SET {} WHERE " + AT


Edit = tuple[str, Callable[[Any], Any]]  # a column, and what becomes of its value


def tamper(conn: Conn, *statements: str | Edit, params: Any = None) -> None:
    """What a superuser can do behind the ledger's back: triggers off, rewrite, triggers on.
    A statement is SQL, or an edit of a column of the event at ``params`` made here (Citus
    refuses an UPDATE of a distributed table calling a STABLE function: ``convert_from``,
    timestamptz arithmetic)."""
    with conn.transaction():
        # on Citus the log is a distributed table (a placeholder setting on one server)
        conn.execute("SET LOCAL citus.enable_unsafe_triggers TO on")
        conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ALL")
        for statement in statements:
            if isinstance(statement, str):
                conn.execute(statement, params)
                continue
            column, change = statement
            name = sql.Identifier(column)
            query = sql.SQL("SELECT {} FROM ledger_events WHERE " + AT).format(name)
            row = conn.execute(query, params).fetchone()
            assert row is not None
            edit = sql.SQL(EDIT.format("{} = %(value)s")).format(name)
            conn.execute(edit, {**params, "value": change(row[0])})
        conn.execute("ALTER TABLE ledger_events ENABLE TRIGGER ALL")


def genesis_of(organization: UUID) -> bytes:
    """Migration 0014's genesis, spelled out: zeros for the platform's chain, and for an
    organization's sha256(origin || uuid) (origin zeros: these logs began after 0014)."""
    return (
        GENESIS if organization.int == 0 else hashlib.sha256(GENESIS + organization.bytes).digest()
    )


def recompute_chain(conn: Conn) -> None:
    """The strongest forger: rewrites every stored hash so each chain is consistent again."""
    rows = conn.execute(
        "SELECT organization_id, position, originator_id, originator_version, topic, state,"
        " recorded_at FROM ledger_events ORDER BY organization_id, position"
    ).fetchall()
    previous: dict[UUID, bytes] = {}
    with conn.transaction():
        conn.execute("SET LOCAL citus.enable_unsafe_triggers TO on")
        conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ALL")
        for chain, position, originator, version, topic, state, recorded in rows:
            before = previous.get(chain, genesis_of(chain))
            previous[chain] = event_hash(
                before, position, originator, version, topic, state, recorded
            )
            conn.execute(
                "UPDATE ledger_events SET hash = %s WHERE organization_id = %s AND position = %s",
                (previous[chain], chain, position),
            )
        conn.execute("ALTER TABLE ledger_events ENABLE TRIGGER ALL")


@pytest.fixture
def history(ledger_app: Ledger) -> Ledger:
    commands = list(demo.history(purchases=20))
    # a customer with purchases is deleted: the table loses them, the log keeps them
    buyer = next(c["customer_id"] for c in commands if c["type"] == "purchase.complete")
    results = load_history(ledger_app, 20, {"type": "user.delete", "user_id": buyer})
    assert results[-1].status == "accepted"
    return ledger_app


def position_of(conn: Conn, topic: str, nth: int = 0) -> tuple[UUID, int]:
    """The chain and the position in it of the nth event of this topic."""
    row = conn.execute(
        "SELECT organization_id, position FROM ledger_events WHERE topic = %s"
        " ORDER BY notification_id OFFSET %s LIMIT 1",
        (topic, nth),
    ).fetchone()
    assert row is not None
    return row[0], int(row[1])


def chains(conn: Conn) -> list[UUID]:
    return [
        r[0] for r in conn.execute("SELECT DISTINCT organization_id FROM ledger_events ORDER BY 1")
    ]


def test_an_intact_log_passes(history: Ledger, cli_env: dict[str, str], conn: Conn) -> None:
    status, lines = verify(cli_env)
    assert status == 0, lines
    found = chains(conn)
    assert len(found) > 2 and found[0].int == 0  # the platform's chain and the organizations'
    assert [x[:4].strip() for x in lines] == ["ok"] * len(found) + [
        "ok",
        "ok",
        "note",
        "ok",
        "note",
    ]
    # the history was written with subjects: no event names anyone in the clear
    assert line(lines, "identities") == "note identities: no event names a person in the clear"
    assert line(lines, "events").startswith("ok") and "decode" in line(lines, "events")
    for chain in found:
        head = conn.execute(
            "SELECT position, encode(hash, 'hex') FROM ledger_events WHERE organization_id = %s"
            " ORDER BY position DESC LIMIT 1",
            (chain,),
        ).fetchone()
        assert head is not None
        if chain.int == 0:
            assert f"head {head[0]}:{head[1]}" in line(lines, "log")
        else:
            assert f"head {chain}/{head[0]}:{head[1]}" in chain_line(lines, chain)
    deleted = conn.execute("SELECT count(*) FROM purchases").fetchone()
    assert deleted is not None and f"({deleted[0]} purchases" in line(lines, "projections")


def test_the_python_hash_is_the_triggers_hash(history: Ledger, conn: Conn) -> None:
    """The definition in ledger.audit.chain, field by field, equals what PostgreSQL stored,
    each chain from its genesis, its positions gapless from 1."""
    rows = conn.execute(
        "SELECT organization_id, position, originator_id, originator_version, topic, state,"
        " recorded_at, hash FROM ledger_events ORDER BY organization_id, position"
    ).fetchall()
    assert len(rows) > 100
    previous: dict[UUID, bytes] = {}
    count: dict[UUID, int] = {}
    for chain, position, originator, version, topic, state, recorded, stored in rows:
        count[chain] = count.get(chain, 0) + 1
        assert position == count[chain]
        before = previous.get(chain, genesis_of(chain))
        previous[chain] = event_hash(before, position, originator, version, topic, state, recorded)
        assert previous[chain] == stored, (chain, position)


@pytest.mark.parametrize(
    ("statements", "first_bad"),
    [
        (
            [("state", lambda state: bytes(state).replace(b"99", b"98"))],
            0,
        ),
        ([("recorded_at", lambda at: at - timedelta(microseconds=1))], 0),
        ([EDIT.format("topic = 'PurchaseFailed'")], 0),
        (["DELETE FROM ledger_events WHERE " + AT], 1),
        (
            [  # slipped in before %(at)s, with a hash chained to its predecessor's
                "UPDATE ledger_events SET position = position + 1000000"
                " WHERE organization_id = %(chain)s AND position >= %(at)s",
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
                " organization_id, position, recorded_at, hash)"
                " SELECT gen_random_uuid(), 1, topic, state, organization_id, %(at)s, recorded_at,"
                " hash FROM ledger_events WHERE organization_id = %(chain)s AND position = %(at)s - 1",
                "UPDATE ledger_events SET position = position - 1000000 + 1"
                " WHERE organization_id = %(chain)s AND position > 1000000",
            ],
            0,
        ),
        (
            [
                "UPDATE ledger_events SET position = -position"
                " WHERE organization_id = %(chain)s AND position IN (%(at)s, %(at)s + 1)",
                "UPDATE ledger_events SET position = %(at)s + 1"
                " WHERE organization_id = %(chain)s AND position = -%(at)s",
                "UPDATE ledger_events SET position = %(at)s"
                " WHERE organization_id = %(chain)s AND position = -%(at)s - 1",
            ],
            0,
        ),
    ],
    ids=["edited-state", "edited-recorded-at", "edited-topic", "deleted", "inserted", "reordered"],
)
def test_tampering_names_the_first_bad_position(
    history: Ledger,
    cli_env: dict[str, str],
    conn: Conn,
    statements: list[str | Edit],
    first_bad: int,
) -> None:
    chain, at = position_of(conn, "PurchaseCompleted", 3)
    tamper(conn, *statements, params={"at": at, "chain": chain})
    status, lines = verify(cli_env)
    assert status == 1
    failed = [x for x in lines if x.startswith("FAIL log")]
    assert failed == [chain_line(lines, chain)]  # the other chains are intact
    assert f"the hash chain breaks at position {at + first_bad}:" in failed[0]


def test_a_recomputed_chain_is_caught_by_an_anchor(
    history: Ledger, cli_env: dict[str, str], conn: Conn, tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.txt"
    status, lines = verify(cli_env, "--record-head", str(anchors))
    assert status == 0 and lines[-1].startswith("head ")
    # one head per chain
    assert len(anchors.read_text().splitlines()) == len(chains(conn))
    assert verify(cli_env, "--anchors", str(anchors))[0] == 0
    # a superuser lowers an early purchase's amount, then recomputes every hash after it
    chain, at = position_of(conn, "PurchaseCompleted", 1)
    tamper(
        conn,
        ("state", lambda state: json.dumps({**json.loads(state), "amount_paid_cents": 1}).encode()),
        params={"at": at, "chain": chain},
    )
    recompute_chain(conn)
    status, lines = verify(cli_env, "--anchors", str(anchors))
    assert status == 1
    assert not [x for x in lines if x.startswith("FAIL log")]  # the chains alone cannot tell
    problem = line(lines, "anchors")
    assert problem.startswith("FAIL") and "was rewritten" in problem and str(chain) in problem
    # the purchases table, written when the event was appended, disagrees too
    assert line(lines, "projections").startswith("FAIL")


def test_events_cut_off_the_end(history: Ledger, cli_env: dict[str, str], conn: Conn) -> None:
    _, lines = verify(cli_env)
    heads = [x.rsplit("head ", 1)[1] for x in lines if x.startswith("ok   log")]
    tamper(
        conn,
        "DELETE FROM ledger_events WHERE notification_id > "
        "(SELECT max(notification_id) - 3 FROM ledger_events)",
    )
    status, lines = verify(cli_env, *[a for h in heads for a in ("--expect-head", h)])
    assert status == 1
    assert not [x for x in lines if x.startswith("FAIL log")]  # still consistent chains
    assert any(x.startswith("note log: notification ids were handed out up to") for x in lines)
    assert "removed from its end" in line(lines, "anchors")


def test_guards_left_off_or_replaced(history: Ledger, cli_env: dict[str, str], conn: Conn) -> None:
    conn.execute("SET citus.enable_unsafe_triggers TO on")  # on Citus: a distributed log
    conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_update_delete")
    status, lines = verify(cli_env)
    assert status == 1 and line(lines, "guards") == (
        "FAIL guards: the trigger ledger_events_no_update_delete on ledger_events is disabled"
    )
    conn.execute("ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_no_update_delete")
    conn.execute("ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_hash_chain")
    assert "not ALWAYS" in line(verify(cli_env)[1], "guards")
    conn.execute("ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_hash_chain")
    assert verify(cli_env)[0] == 0
    conn.execute(
        "CREATE OR REPLACE FUNCTION ledger_events_chain() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.hash := '\\x00'; RETURN NEW; END; $$"
    )
    status, lines = verify(cli_env)
    assert status == 1 and "ledger_events_chain is not the one the migrations define" in line(
        lines, "guards"
    )


FIRST_UNREFUNDED = (
    "(SELECT min(stripe_payment_intent_id) FROM purchases"
    " WHERE status = 'completed' AND refunded_amount_cents = 0)"
)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "UPDATE purchases SET refunded_amount_cents = 1 WHERE stripe_payment_intent_id = "
            + FIRST_UNREFUNDED,
            "refunded_cents is {table} in the table but {log} from the log (first: purchase "
            "{intent}: refunded_amount_cents 1 in the table, 0 in the log)",
        ),
        (
            "DELETE FROM purchases WHERE stripe_payment_intent_id = " + FIRST_UNREFUNDED,
            "(first: purchase {intent} is in the log but not in the table)",
        ),
        (
            "INSERT INTO purchases (customer_id, content_id, organization_id,"
            " stripe_payment_intent_id, status, amount_paid_cents, currency)"
            " SELECT customer_id, content_id, organization_id, 'pi_forged', 'pending', 1, currency"
            " FROM purchases WHERE stripe_payment_intent_id = " + FIRST_UNREFUNDED,
            "(first: purchase pi_forged is in the table but not in the log)",
        ),
    ],
    ids=["altered", "removed", "slipped-in"],
)
def test_reconciliation_names_an_altered_purchases_row(
    history: Ledger, cli_env: dict[str, str], conn: Conn, statement: str, expected: str
) -> None:
    row = conn.execute("SELECT " + FIRST_UNREFUNDED).fetchone()
    assert row is not None
    intent = row[0]
    organization, currency, refunded = conn.execute(
        "SELECT organization_id, currency, sum(refunded_amount_cents) OVER"
        " (PARTITION BY organization_id, currency) FROM purchases"
        " WHERE stripe_payment_intent_id = %s",
        (intent,),
    ).fetchone() or (None, None, None)
    conn.execute(statement)
    status, lines = verify(cli_env)
    assert status == 1
    labels = [x[:4].strip() for x in lines if not x.startswith("note")]
    assert labels == ["ok"] * len(chains(conn)) + ["ok", "ok", "FAIL"]
    problem = line(lines, "projections")
    if "refunded_cents" in expected:
        expected = expected.format(table=refunded + 1, log=refunded, intent=intent)
        assert f"organization {organization} in {currency}" in problem
    assert expected.format(intent=intent) in problem


@pytest.mark.parametrize(
    "args",
    [["--expect-head", "12:abc"], ["--expect-head", "x"], ["--anchors", "/nonexistent/anchors"]],
)
def test_bad_anchors_exit_two(cli_env: dict[str, str], args: list[str]) -> None:
    done = cli(cli_env, "audit", "verify", *args)
    assert done.returncode == 2 and done.stderr.startswith("ledger: --")


def test_an_empty_log_verifies(cli_env: dict[str, str]) -> None:
    status, lines = verify(cli_env, "--expect-head", "0:" + "0" * 64)
    assert status == 0 and "0 events" in lines[0] and line(lines, "anchors").startswith("ok")


def test_a_chain_without_its_row_of_chain_heads_is_still_checked(
    history: Ledger, cli_env: dict[str, str], conn: Conn, settings: Settings
) -> None:
    """On one server the chains are found in the log itself; on a log placed on Citus they
    are the rows of ``ledger_chain_heads``, so a chain whose row a superuser removed would go
    unwalked: its events are counted there, and the check fails."""
    chain, _ = position_of(conn, "PurchaseCompleted", 0)
    conn.execute("DELETE FROM ledger_chain_heads WHERE organization_id = %s", (chain,))
    status, lines = verify(cli_env)
    if not distribution.log_is_distributed(conn, settings.schema):
        assert status == 0 and chain_line(lines, chain).startswith("ok")
        return
    assert status == 1
    failed = [x for x in lines if x.startswith("FAIL log")]
    events = conn.execute(
        "SELECT count(*) FROM ledger_events WHERE organization_id = %s", (chain,)
    ).fetchone()
    assert events is not None and failed == [
        f"FAIL log: {events[0]} events lie outside every chain of ledger_chain_heads (a "
        "chain's row is made by its first append): they were inserted behind the ledger's back"
    ]
