"""``ledger events [--after P|CURSOR] [--until P] [--chain ORG] [--topic T]... [--follow]
[--limit N] [--source S] [--correlation-id ID] [--idempotency-key KEY]``.

The log in position order as JSON Lines (``ledger.reading.stream``), or with a cursor of
every chain (``ORGANIZATION:POSITION,...``), every chain in its own position order
(``ledger.reading.chains``): what a log in the ``organization`` order is read with, and
what ``ledger events`` reads there without ``--after``. SIGINT and SIGTERM stop it between
two lines, never inside one; the last line on stderr then names the last position (or
cursor) written, to resume from with ``--after``. Exit status: 0 at the end of the
log, at ``--until`` or ``--limit``, on SIGTERM (how a supervisor stops a follower) and
when the reader of the output goes away; 130 on SIGINT; 2 for a usage, configuration
or connection error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Generator
from typing import Any
from uuid import UUID

import orjson

from ledger import api
from ledger.cli import streaming
from ledger.cli.streaming import EXIT_ERROR
from ledger.domain.provenance import SOURCES, UNRECORDED
from ledger.reading import chains, stream
from ledger.reading.cursor import Cursor


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
        type=streaming.position_or_cursor,
        metavar="POSITION|CURSOR",
        help="start after this position, or after this cursor of every chain "
        "(ORGANIZATION:POSITION joined by commas, 'platform' for the platform's chain); "
        "default: the start, in the log's order",
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
    after: int | Cursor | None = args.after
    if isinstance(after, Cursor) and (args.chain is not None or args.until is not None):
        return _usage("a cursor of every chain (--after ORG:POS,...) takes no --chain nor --until")
    if args.until is not None and args.until < (after or 0):
        return _usage(f"--until {args.until} lies before --after {after}")
    settings = api.settings(args.database_url, args.schema)
    if args.chain is not None:
        after = after or 0  # one chain: its own positions, whatever the log's order
    elif not isinstance(after, Cursor):
        try:
            after = chains.starting_point(settings, after)
        except ValueError as error:
            return _usage(str(error).replace("after: ", "--after: ", 1))
    provenance = stream.ProvenanceFilter(args.source, args.correlation_id, args.idempotency_key)
    with streaming.stopping() as stopped:
        batches: Generator[Any, None, None]
        if isinstance(after, Cursor):
            batches = chains.read_chains(
                settings,
                after=after,
                topics=args.topic,
                follow=args.follow,
                size=stream.batch_size(args.limit),
                stop=stopped.event,
                provenance=provenance,
            )
        else:
            batches = stream.read_batches(
                settings,
                after=after,
                until=args.until,
                topics=args.topic,
                follow=args.follow,
                size=stream.batch_size(args.limit),
                stop=stopped.event,
                provenance=provenance,
                chain=args.chain,
            )
        try:
            return streaming.write(
                (batch.records for batch in batches),
                stopped,
                after=after,
                limit=args.limit,
                encode=_encoder(after, args.chain),
                resume=_resume(args.chain),
            )
        finally:
            batches.close()


def _usage(message: str) -> int:
    print(f"ledger events: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _encoder(
    after: int | Cursor, chain: UUID | None
) -> Callable[[stream.EventRecord], tuple[int | object, bytes]]:
    """Each record's line, and where a reader resumes after it: its position (in its
    chain, with ``--chain``), or the cursor of every chain moved to it."""
    if not isinstance(after, Cursor):
        return lambda record: (record.cursor(chain), orjson.dumps(record.as_dict()))
    running = _Running(after)

    def encode(record: stream.EventRecord) -> tuple[int | object, bytes]:
        running.positions[record.organization_id] = record.chain_position
        return running, orjson.dumps(record.as_dict())

    return encode


class _Running:
    """The cursor after the last line written, kept as a dict and made text only for the
    resume hint: a new ``Cursor`` per line would cost a copy of every chain's position."""

    def __init__(self, start: Cursor) -> None:
        self.positions = dict(start)

    def __str__(self) -> str:
        return str(Cursor(self.positions))


def _resume(chain: UUID | None) -> str:
    if chain is None:
        return ""
    return f"--chain {'platform' if chain == stream.PLATFORM else chain}"
