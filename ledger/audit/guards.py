"""Are the log's guards still in place, as the migrations left them?

The triggers that refuse UPDATE, DELETE and TRUNCATE, the one that refuses an event
that does not decode, and the one that chains each appended event are what make the
log append-only, readable and tamper-evident; the one that takes the log's lock before
any insert keeps positions in commit order, which readers of the stream rely on
(docs/stream.md). A superuser
can disable them or replace their functions; a tamperer who forgets to put them back,
or leaves a forging chain function behind, is named here: each trigger must exist,
fire ALWAYS (even in replica mode) and call its function, and each function's body
must be the one the migrations define.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from ledger.database import migrations

TRIGGERS = {
    "ledger_events_check_shape": "ledger_events_check_shape",
    "ledger_events_no_update_delete": "ledger_events_refuse_change",
    "ledger_events_no_truncate": "ledger_events_refuse_change",
    "ledger_events_hash_chain": "ledger_events_chain",
    "ledger_events_insert_lock": "ledger_events_take_lock",
}
# disabled exactly when the log was in organization order, before migration 0018; since
# 0018 the order is a row the trigger reads (``ledger.log.chains``), and a disabled trigger
# is always tampering
ORDER_TRIGGER = "ledger_events_insert_lock"
_FUNCTION = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(\s*\)[^$]*?AS\s+\$\$(.*?)\$\$",
    re.IGNORECASE | re.DOTALL,
)


def migrated_bodies() -> dict[str, str]:
    """The body of each guard function as the latest migration defining it wrote it."""
    bodies: dict[str, str] = {}
    for migration in migrations.discover():
        for name, body in _FUNCTION.findall(migration.up):
            if name in TRIGGERS.values():
                bodies[name] = body
    return bodies


def check_guards(conn: psycopg.Connection[Any], schema: str) -> str | None:
    """None when every guard is in place, else the first one that is not."""
    triggers = {
        name: (enabled, function)
        for name, enabled, function in conn.execute(
            "SELECT t.tgname, t.tgenabled, p.proname"
            "  FROM pg_trigger t"
            "  JOIN pg_class c ON c.oid = t.tgrelid"
            "  JOIN pg_namespace n ON n.oid = c.relnamespace"
            "  JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE n.nspname = %s AND c.relname = 'ledger_events' AND NOT t.tgisinternal",
            (schema,),
        ).fetchall()
    }
    order_is_a_row = migrations.has_table(conn, schema, "ledger_log_order")
    for trigger, function in TRIGGERS.items():
        if trigger not in triggers:
            return f"the trigger {trigger} on ledger_events is missing"
        enabled, calls = triggers[trigger]
        if trigger == ORDER_TRIGGER and enabled == "D" and not order_is_a_row:
            pass  # the log in organization order (ledger.log.chains): the chains' locks
        elif enabled != "A":
            state = "disabled" if enabled == "D" else f"enabled as {enabled!r}, not ALWAYS"
            return f"the trigger {trigger} on ledger_events is {state}"
        if calls != function:
            return f"the trigger {trigger} calls {calls}, not {function}"
    sources = dict(
        conn.execute(
            "SELECT p.proname, p.prosrc FROM pg_proc p"
            "  JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = %s AND p.proname = ANY(%s)",
            (schema, sorted(set(TRIGGERS.values()))),
        ).fetchall()
    )
    for name, body in sorted(migrated_bodies().items()):
        if sources.get(name) != body:
            return f"the function {name} is not the one the migrations define: it was replaced"
    return None
