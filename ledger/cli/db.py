"""``ledger db upgrade | downgrade --to base | status | stop | roles``."""

from __future__ import annotations

import argparse
from typing import Any

from ledger import migrations
from ledger.cli import server
from ledger.config import resolve
from ledger.db import connect


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    db = groups.add_parser("db", help="migrate the event log and the projected tables")
    commands = db.add_subparsers(dest="db_command", required=True)
    up = commands.add_parser("upgrade", parents=[common], help="create or migrate (safe to rerun)")
    up.set_defaults(func=upgrade)
    down = commands.add_parser(
        "downgrade", parents=[common], help="roll the projected tables back; the log stays"
    )
    down.add_argument(
        "--to",
        required=True,
        help="'base' (the log alone), a migration number, or 'zero' (only with an empty log)",
    )
    down.set_defaults(func=downgrade)
    st = commands.add_parser(
        "status",
        parents=[common],
        help="applied and pending migrations; whether the embedded server runs",
    )
    st.set_defaults(func=status)
    server.register(commands, common)
    roles = commands.add_parser(
        "roles", parents=[common], help="create the owner, writer, projector and reader roles"
    )
    roles.add_argument(
        "--prefix", default="ledger", help="role names: PREFIX_owner, ... (default ledger)"
    )
    roles.add_argument(
        "--login", action="store_true", help="let the roles log in (else group roles)"
    )
    roles.set_defaults(func=create_roles)


def upgrade(args: argparse.Namespace) -> int:
    settings = resolve(args.database_url, args.schema)
    with connect(settings) as conn:
        applied = migrations.upgrade(conn, settings.schema)
    for migration in applied:
        print(f"applied {migration.label}")
    if not applied:
        print(f"up to date at {migrations.head():04d}")
    return 0


def _target(text: str) -> int:
    if text == "base":
        return migrations.LOG_VERSION
    if text == "zero":
        return 0
    if text.isdigit():
        return int(text)
    raise SystemExit(f"ledger: --to takes 'base', 'zero' or a migration number, not {text!r}")


def downgrade(args: argparse.Namespace) -> int:
    settings = resolve(args.database_url, args.schema)
    target = _target(args.to)
    with connect(settings) as conn:
        undone = migrations.downgrade(conn, settings.schema, target)
    for migration in undone:
        print(f"rolled back {migration.label}")
    if not undone:
        print("nothing to roll back")
    return 0


def status(args: argparse.Namespace) -> int:
    if not server.given_url(args) and not server.embedded_status():
        return 0
    settings = resolve(args.database_url, args.schema)
    with connect(settings, autocommit=True) as conn:
        found = conn.execute("SHOW server_version").fetchone()
        print(f"server: PostgreSQL {found[0] if found else 'unknown'}, schema {settings.schema}")
        states = migrations.status(conn, settings.schema)
    for state in states:
        when = state.applied_at.isoformat() if state.applied_at else "pending"
        print(f"{state.migration.label}\t{when}")
    return 0


def create_roles(args: argparse.Namespace) -> int:
    from ledger import roles

    settings = resolve(args.database_url, args.schema)
    with connect(settings, autocommit=True) as conn:
        names = roles.create_roles(conn, settings.schema, args.prefix, args.login)
    for kind, name in names.items():
        print(f"{kind}\t{name}")
    return 0
