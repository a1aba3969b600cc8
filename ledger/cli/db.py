"""``ledger db upgrade | downgrade --to base | status | stop | roles | distribute``."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from uuid import UUID

from ledger import api
from ledger.cli import server
from ledger.database import migrations
from ledger.database.connections import connect
from ledger.errors import ConfigurationError


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    db = groups.add_parser("db", help="migrate the event log and the projected tables")
    commands = db.add_subparsers(dest="db_command", required=True)
    up = commands.add_parser(
        "upgrade",
        parents=[common],
        help="create or migrate (safe to rerun); fills tables it creates over a non-empty log",
    )
    up.set_defaults(func=upgrade)
    down = commands.add_parser(
        "downgrade", parents=[common], help="roll the projected tables back; the log stays"
    )
    down.add_argument(
        "--to",
        required=True,
        help="'base' (the log and its guards alone), a migration number, "
        "or 'zero' (only with an empty log)",
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
        "roles",
        parents=[common],
        help="create the owner, writer, projector, reader and tenant roles; with "
        "--organization, a login bound to one organization",
    )
    roles.add_argument(
        "--prefix", default="ledger", help="role names: PREFIX_owner, ... (default ledger)"
    )
    roles.add_argument(
        "--organization",
        metavar="UUID",
        help="bind the login named by --login to this organization: it sees only its rows",
    )
    roles.add_argument(
        "--login",
        nargs="?",
        const=True,
        default=None,
        metavar="NAME",
        help="with --organization: the login role to create and bind; alone: let the "
        "group roles log in (else they are group roles)",
    )
    roles.set_defaults(func=create_roles)
    spread = commands.add_parser(
        "distribute",
        parents=[common],
        help="on a Citus coordinator: distribute the money tables, the event log and the "
        "playback store by organization (keys that are one namespace by the key) and make "
        "the shared ones reference tables (safe to rerun; refused without Citus)",
    )
    spread.set_defaults(func=distribute)


def upgrade(args: argparse.Namespace) -> int:
    settings = api.settings(args.database_url, args.schema)
    applied = api.upgrade(settings)
    for migration in applied:
        print(f"applied {migration.label}")
    if not applied:
        print(f"up to date at {migrations.head():04d}")
    return 0


def downgrade(args: argparse.Namespace) -> int:
    try:
        target = migrations.target(args.to)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    settings = api.settings(args.database_url, args.schema)
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
    settings = api.settings(args.database_url, args.schema)
    with connect(settings, autocommit=True) as conn:
        found = conn.execute("SHOW server_version").fetchone()
        print(f"server: PostgreSQL {found[0] if found else 'unknown'}, schema {settings.schema}")
        states = migrations.status(conn, settings.schema)
    for state in states:
        when = state.applied_at.isoformat() if state.applied_at else "pending"
        print(f"{state.migration.label}\t{when}")
    return 0


def create_roles(args: argparse.Namespace) -> int:
    from ledger.database import roles

    organization = None
    if args.organization is not None:
        try:
            organization = UUID(args.organization)
        except ValueError:
            raise ConfigurationError(
                f"--organization: {args.organization!r} is not a UUID"
            ) from None
        if not isinstance(args.login, str):
            raise ConfigurationError("--organization needs --login NAME: the login to bind")
    elif isinstance(args.login, str):
        raise ConfigurationError(
            f"--login {args.login}: a login name goes with --organization UUID; "
            "alone, --login takes no value"
        )
    settings = api.settings(args.database_url, args.schema)
    with connect(settings, autocommit=True) as conn:
        login = None if organization is not None else bool(args.login)
        names = roles.create_roles(conn, settings.schema, args.prefix, login)
        if organization is not None:
            known = roles.bind_login(conn, settings.schema, args.prefix, organization, args.login)
    for kind, name in names.items():
        print(f"{kind}\t{name}")
    if organization is not None:
        print(f"login\t{args.login}\tbound to organization {organization}")
        if not known:
            print(
                f"ledger: note: no organization {organization} is registered in the log yet; "
                f"{args.login} sees nothing until it is",
                file=sys.stderr,
            )
    return 0


def distribute(args: argparse.Namespace) -> int:
    from ledger.database import distribution

    settings = api.settings(args.database_url, args.schema)
    with connect(settings) as conn:
        steps = distribution.distribute(conn, settings.schema)
        conn.commit()
    for step in steps:
        how = f"by {step.column}" if step.place == "distributed" else "on every node"
        print(f"{step.table}\t{step.place} {how}\t{'done' if step.done else 'in place already'}")
    return 0
