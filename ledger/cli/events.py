"""``ledger events [--after P] [--until P] [--chain ORGANIZATION] [--topic T]... [--follow]
[--limit N] [--source S] [--correlation-id ID] [--idempotency-key KEY]``.

The log in position order as JSON Lines (``ledger.reading.stream``). SIGINT and SIGTERM stop
it between two lines, never inside one; the last line on stderr then names the last
position written, to resume from with ``--after``. Exit status: 0 at the end of the
log, at ``--until`` or ``--limit``, on SIGTERM (how a supervisor stops a follower) and
when the reader of the output goes away; 130 on SIGINT; 2 for a usage, configuration
or connection error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any
from uuid import UUID

import orjson
import psycopg

from ledger import api
from ledger.cli.signals import SignalStop
from ledger.domain.provenance import SOURCES, UNRECORDED
from ledger.reading import stream

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 2, 130


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
        "--after", type=_position, default=0, metavar="POSITION", help="start after (default 0)"
    )
    parser.add_argument(
        "--until", type=_position, metavar="POSITION", help="stop at this position (inclusive)"
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
    parser.add_argument("--limit", type=_count, metavar="N", help="at most N events")
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


def _position(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise argparse.ArgumentTypeError(f"a position is a whole number 0 or more, not {text!r}")
    return int(text)


def _chain(text: str) -> UUID:
    if text == "platform":
        return stream.PLATFORM
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a chain is an organization's uuid or 'platform', not {text!r}"
        ) from None


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a count is a whole number 1 or more, not {text!r}")
    return int(text)


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
    out = sys.stdout.buffer
    last, count = args.after, 0
    with _stopping() as stopped:
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
            for batch in batches:
                for record in batch.records:
                    out.write(orjson.dumps(record.as_dict()) + b"\n")
                    last, count = record.cursor(args.chain), count + 1
                    if stopped.event.is_set() or count == args.limit:
                        break
                out.flush()  # a follower's reader sees each batch as soon as it is read
                if stopped.event.is_set() or count == args.limit:
                    break
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_OK
        except psycopg.Error as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else "lost"
            print(f"ledger: database error: {first}", file=sys.stderr)
            _resume_hint(last, args.chain)
            return EXIT_ERROR
        finally:
            batches.close()
    if stopped.signal is None:
        return EXIT_OK
    _resume_hint(last, args.chain)
    return EXIT_INTERRUPTED if stopped.signal == signal.SIGINT else EXIT_OK


def _resume_hint(last: int, chain: UUID | None = None) -> None:
    where = "" if chain is None else f"--chain {'platform' if chain == stream.PLATFORM else chain} "
    print(
        f"ledger: stopped after position {last}; resume with {where}--after {last}",
        file=sys.stderr,
    )


class _Stopped:
    def __init__(self) -> None:
        self.event = SignalStop()  # not a threading.Event: set from a signal handler
        self.signal: int | None = None

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum
        self.event.set()


@contextmanager
def _stopping() -> Iterator[_Stopped]:
    """SIGINT and SIGTERM set an event the reader checks between lines and while it
    waits, instead of raising in the middle of a write."""
    stopped = _Stopped()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(signum, stopped.handler) for signum in signals]
    try:
        yield stopped
    finally:
        for signum, handler in zip(signals, previous, strict=True):
            signal.signal(signum, handler)
        stopped.event.close()


def _silence_stdout() -> None:
    """The reader went away (``ledger events | head``): drop what is left unflushed,
    so that the interpreter's own flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
