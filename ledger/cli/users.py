"""``ledger users export USER_ID``: everything the ledger holds about one person, as one
JSON document on stdout (docs/privacy.md). Exit status: 0 with the document; 1 when the
ledger knows no one by that id (erased or never registered: ``not_found`` on stderr); 2
for a usage, configuration or connection error.

``ledger users older-events USER_ID [--after POSITION]``: every event written before
subjects that still names the person in the clear, one JSON line each, in log order
(the full list behind an erasure's bounded ``older_events`` answer). Exit status 0 (no
line: no older event names them), 2 as above."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
import psycopg

from ledger import api
from ledger.commands.fields import check_id
from ledger.database.connections import connect
from ledger.privacy import older
from ledger.privacy.export import export


def _user_id(text: str) -> str:
    try:
        return check_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"USER_ID {error}") from None


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    group = groups.add_parser(
        "users", help="a person's data: export, older events (docs/privacy.md)"
    )
    commands = group.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser(
        "export",
        parents=[common],
        help="everything the ledger holds about one person, as one JSON document",
    )
    exporting.add_argument("user_id", type=_user_id, metavar="USER_ID")
    exporting.set_defaults(func=run_export)
    listing = commands.add_parser(
        "older-events",
        parents=[common],
        help="every event written before subjects that names the person in the clear",
    )
    listing.add_argument("user_id", type=_user_id, metavar="USER_ID")
    listing.add_argument(
        "--after", type=_position, default=0, metavar="POSITION", help="only events after it"
    )
    listing.set_defaults(func=run_older_events)


def _position(text: str) -> int:
    if not text.isdigit() or int(text) > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"--after {text!r}: give a log position, 0 or more")
    return int(text)


def run_older_events(args: argparse.Namespace) -> int:
    settings = api.settings(args.database_url, args.schema)
    after: int = args.after
    with connect(settings) as conn:
        while True:  # a page at a time: bounded memory for any number of events
            page = older.naming(conn, settings.schema, args.user_id, after, older.PAGE)
            conn.rollback()
            for event in page:
                sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
            if len(page) < older.PAGE:
                return 0
            after = page[-1]["position"]


def run_export(args: argparse.Namespace) -> int:
    settings = api.settings(args.database_url, args.schema)
    with connect(settings) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        document = export(conn, settings.schema, args.user_id)
        conn.rollback()
    if document is None:
        print(
            f"ledger: not_found: no user {args.user_id!r} (erased, or never registered)",
            file=sys.stderr,
        )
        return 1
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return 0
