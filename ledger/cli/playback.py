"""``ledger playback status [--format json] | compact [--before T] | events [--after P]
[--follow] [--limit N]``: the playback store (docs/cli.md, "ledger playback").

``events`` follows the conventions of ``ledger events``: JSON Lines in position order,
SIGINT and SIGTERM stop it between two lines and the last line on stderr names the last
position written, to resume from with ``--after``; on the distributed layout, where each
organization has its own positions, a cursor of every organization (``ORGANIZATION:POSITION``
joined by commas), as ``ledger events`` on the distributed log.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from ledger import api
from ledger.cli import streaming
from ledger.cli.streaming import EXIT_ERROR, EXIT_OK
from ledger.domain import clock
from ledger.reading.cursor import Cursor


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    group = groups.add_parser("playback", help="the playback store: status, compaction, stream")
    commands = group.add_subparsers(dest="command", required=True)
    status = commands.add_parser(
        "status", parents=[common], help="heartbeats stored, partitions, horizon, retention"
    )
    status.add_argument("--format", choices=("table", "json"), default="table")
    status.set_defaults(func=run_status)
    compact = commands.add_parser(
        "compact",
        parents=[common],
        help="fold heartbeats before T into one row per (user, content), drop their partitions",
    )
    compact.add_argument(
        "--before",
        type=_moment,
        metavar="T",
        help="RFC 3339 time with an offset, rounded down to its UTC day "
        "(default: now minus LEDGER_PLAYBACK_RETENTION, 30d)",
    )
    compact.set_defaults(func=run_compact)
    events = commands.add_parser(
        "events",
        parents=[common],
        help="the store's retained heartbeats in position order (JSON Lines)",
    )
    events.add_argument(
        "--after",
        type=streaming.position_or_cursor,
        default=0,
        metavar="POSITION|CURSOR",
        help="start after this position (default 0), or on the distributed store after this "
        "cursor of every organization (ORGANIZATION:POSITION joined by commas)",
    )
    events.add_argument(
        "--follow", action="store_true", help="then wait for new heartbeats (polls)"
    )
    events.add_argument("--limit", type=streaming.count, metavar="N", help="at most N heartbeats")
    events.set_defaults(func=run_events)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not clock.within_window(moment):
        raise argparse.ArgumentTypeError(
            f"a time is RFC 3339 with an offset, within {clock.WINDOW}, not {text!r}"
        )
    return moment


def run_status(args: argparse.Namespace) -> int:
    report = api.playback_status(api.settings(args.database_url, args.schema))
    if args.format == "json":
        print(orjson.dumps(report).decode())
        return EXIT_OK
    for name, value in report.items():
        print(f"{name:<18}{'-' if value is None else value}")
    return EXIT_OK


def run_compact(args: argparse.Namespace) -> int:
    done = api.playback_compact(api.settings(args.database_url, args.schema), args.before)
    print(
        f"compacted before {clock.canonical(done.before)}: {done.records} heartbeats folded "
        f"into {done.pairs} rows, {done.partitions} partitions dropped"
    )
    return EXIT_OK


def run_events(args: argparse.Namespace) -> int:
    settings = api.settings(args.database_url, args.schema)
    try:
        after = api.playback_start(settings, args.after)
    except ValueError as error:
        message = str(error).replace("after: ", "--after: ", 1)
        print(f"ledger playback events: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    with streaming.stopping() as stopped:
        batches = api.playback_events(
            settings, after, follow=args.follow, limit=args.limit, stop=stopped.event
        )
        try:
            return streaming.write(
                batches, stopped, after=after, limit=None, encode=_encoder(after)
            )
        finally:
            batches.close()


def _encoder(after: int | Cursor) -> Callable[[dict[str, Any]], tuple[int | object, bytes]]:
    """Each record's line, and where a reader resumes after it: its position, or on the
    distributed layout the cursor of every organization moved to it."""
    if not isinstance(after, Cursor):
        return lambda record: (int(record["position"]), orjson.dumps(record))
    running = _Running(after)

    def encode(record: dict[str, Any]) -> tuple[int | object, bytes]:
        running.positions[UUID(record["organization_id"])] = int(record["position"])
        return running, orjson.dumps(record)

    return encode


class _Running:
    """The cursor after the last line written (made text only for the resume hint)."""

    def __init__(self, start: Cursor) -> None:
        self.positions = dict(start)

    def __str__(self) -> str:
        return str(Cursor(self.positions))
