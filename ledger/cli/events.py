"""``ledger events [--after P] [--until P] [--topic T]... [--follow] [--limit N]
[--source S] [--correlation-id ID] [--idempotency-key KEY]``.

The log in position order as JSON Lines (``ledger.reading.stream``). SIGINT and SIGTERM stop
it between two lines, never inside one; the last line on stderr then names the last
position written, to resume from with ``--after``. Exit status: 0 at the end of the
log, at ``--until`` or ``--limit``, on SIGTERM (how a supervisor stops a follower) and
when the reader of the output goes away; 130 on SIGINT; 2 for a usage, configuration
or connection error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from uuid import UUID

import orjson

from ledger import api
from ledger.cli import streaming
from ledger.cli.streaming import EXIT_ERROR
from ledger.domain.provenance import SOURCES, UNRECORDED
from ledger.reading import stream


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    parser = groups.add_parser(
        "events",
        parents=[common],
        help="the event log in position order (JSON Lines)",
        description="The event log in position order, one JSON object a line: position, "
        "recorded_at, topic, originator_id, version, data, hash, organization_id, "
        "chain_position.",
    )
    parser.add_argument(
        "--after",
        type=streaming.position,
        default=0,
        metavar="POSITION",
        help="start after (default 0)",
    )
    parser.add_argument(
        "--until",
        type=streaming.position,
        metavar="POSITION",
        help="stop at this position (inclusive)",
    )
    parser.add_argument(
        "--chain",
        type=_chain,
        metavar="ORGANIZATION",
        help="read one chain: an organization's uuid, or 'platform'; --after and --until are "
        "then positions in that chain (its chain_position)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        type=_topic,
        default=[],
        metavar="T",
        help="only events of this topic (repeatable)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="then wait for new events (polls; stop with Ctrl-C or SIGTERM)",
    )
    parser.add_argument("--limit", type=streaming.count, metavar="N", help="at most N events")
    parser.add_argument(
        "--source",
        choices=(*SOURCES, UNRECORDED),
        help="only events recorded by commands from this source "
        f"({UNRECORDED}: recorded before provenance)",
    )
    parser.add_argument(
        "--correlation-id",
        metavar="ID",
        help="only events with this correlation id (file:line, HTTP request id, Stripe event id)",
    )
    parser.add_argument(
        "--idempotency-key", metavar="KEY", help="only events of the command with this key"
    )
    parser.set_defaults(func=run)


def _chain(text: str) -> UUID:
    if text == "platform":
        return stream.PLATFORM
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a chain is an organization's uuid or 'platform', not {text!r}"
        ) from None


def _topic(text: str) -> str:
    try:
        return stream.check_topics([text])[0]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("topic: ")) from None


def run(args: argparse.Namespace) -> int:
    if args.until is not None and args.until < args.after:
        print(
            f"ledger events: error: --until {args.until} lies before --after {args.after}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    settings = api.settings(args.database_url, args.schema)
    with streaming.stopping() as stopped:
        batches = stream.read_batches(
            settings,
            after=args.after,
            until=args.until,
            topics=args.topic,
            follow=args.follow,
            size=stream.batch_size(args.limit),
            stop=stopped.event,
            provenance=stream.ProvenanceFilter(
                args.source, args.correlation_id, args.idempotency_key
            ),
            chain=args.chain,
        )
        try:
            return streaming.write(
                (batch.records for batch in batches),
                stopped,
                after=args.after,
                limit=args.limit,
                encode=lambda record: _line(record, args.chain),
                resume=_resume(args.chain),
            )
        finally:
            batches.close()


def _line(record: stream.EventRecord, chain: UUID | None) -> tuple[int, bytes]:
    return record.cursor(chain), orjson.dumps(record.as_dict())


def _resume(chain: UUID | None) -> str:
    if chain is None:
        return ""
    return f"--chain {'platform' if chain == stream.PLATFORM else chain}"
