"""``ledger append [FILE|-] [--atomic | --batch N]``: JSON Lines in, one result line out per line.

Each answer is written and flushed once its line is settled (committed, a duplicate, or
rejected); with ``--batch``, once the transaction its line shares with up to N - 1 others
has committed. Stopped early (a signal, a lost connection, stdout closed), it still writes every
answer it owes, and its last line on stderr says how far it got and where to resume.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from ledger import api
from ledger.cli.batches import ready_groups
from ledger.cli.errors import EXIT_BROKEN_PIPE, report, silence_stdout
from ledger.cli.progress import AppendProgress
from ledger.cli.signals import GUARD, Interrupted
from ledger.commands.results import Result
from ledger.errors import ConfigurationError
from ledger.service import Ledger


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    parser = groups.add_parser(
        "append", parents=[common], help="append checkout commands (JSON Lines)"
    )
    parser.add_argument("file", nargs="?", default="-", help="a JSON Lines file, or - for stdin")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--atomic", action="store_true", help="the whole input in one transaction: all or nothing"
    )
    mode.add_argument(
        "--batch",
        type=_batch_size,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"up to N lines per transaction, each decided alone (default {DEFAULT_BATCH})",
    )
    parser.set_defaults(func=run)


DEFAULT_BATCH = 100
"""Lines per transaction by default: docs/performance.md (group commit) has the measurements."""
MAX_BATCH = 100_000


def _batch_size(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_BATCH:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a batch size: give a whole number from 1 to {MAX_BATCH}"
        )
    return int(value)


@dataclass
class _Tally:
    """How far the run got: answers written, and the lines they settled."""

    answers: int = 0
    last_line: int = 0  # the last line answered
    settled: int = 0  # the last line settled, answered or not
    rejected: bool = False

    def summary(self, why: str, atomic: bool, unsure: bool, batched: bool = False) -> str:
        answered = f"{self.answers} line{'' if self.answers == 1 else 's'} answered"
        if atomic and self.settled:
            done = f"{answered}; every line was committed together (--atomic)"
            if self.settled > self.last_line:
                done += f", the answers from line {self.settled} on were lost"
            return f"ledger: {why}: {done}"
        if atomic and unsure:
            return (
                f"ledger: {why}: no answer was written; the input (one transaction, --atomic) may "
                f"or may not have committed: sending it again whole is safe"
            )
        if atomic:
            return f"ledger: {why}: nothing was committed (--atomic); resume from line 1"
        done = f"{answered}, every line up to line {self.last_line} settled"
        if self.settled == self.last_line + 1:
            done += f"; line {self.settled} was settled but its answer was lost"
        elif self.settled > self.last_line:
            done += (
                f"; lines {self.last_line + 1} to {self.settled} were settled (committed "
                "together) but their answers were lost"
            )
        text = f"ledger: {why}: {done}; the first line not committed is line {self.settled + 1}"
        if unsure and batched:
            text += (
                " (it and the lines after it in its transaction may have committed without "
                "their answers: sending them again is safe)"
            )
        elif unsure:
            text += " (it may have committed without its answer: sending it again is safe)"
        return text


def _settled_groups(
    ledger: Ledger, source: BinaryIO, args: argparse.Namespace, max_bytes: int
) -> Iterator[list[tuple[int, Result]]]:
    """The answers, a group at a time: a transaction's lines (one, unless ``--batch``)."""
    if args.atomic or args.batch == 1:
        lines = GUARD.released(source)
        answers = api.append_lines(ledger, lines, atomic=args.atomic, source="cli", name=args.file)
        yield from ([answer] for answer in answers)
        return
    groups = GUARD.released(ready_groups(source, args.batch, max_bytes))
    yield from api.append_line_groups(ledger, groups, source="cli", name=args.file)


def run(args: argparse.Namespace) -> int:
    settings = api.settings(args.database_url, args.schema)
    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
        total = AppendProgress.total_of(args.file) if AppendProgress.wanted(sys.stderr) else None
    except OSError as error:
        raise ConfigurationError(f"cannot read {args.file}: {error.strerror}") from None
    tally = _Tally()
    why, unsure, status = "", False, 0
    with source, api.open_ledger(settings) as ledger:
        progress = AppendProgress(total)
        try:
            with GUARD.holding():
                out = sys.stdout.buffer
                for group in _settled_groups(ledger, source, args, settings.group_max_bytes):
                    tally.settled = group[-1][0]  # the whole group has committed
                    for number, result in group:
                        out.write(orjson.dumps(result.as_dict(number)) + b"\n")
                        out.flush()
                        rejected = result.status in ("rejected", "rolled_back")
                        tally.rejected = tally.rejected or rejected
                        tally.answers += 1
                        tally.last_line = number
                        progress.advance(number, rejected)
        except Interrupted as interrupted:
            why, unsure = f"interrupted by {interrupted.name}", interrupted.forced
            status = interrupted.exit_status
        except BrokenPipeError:
            silence_stdout()
            why, unsure = "standard output was closed", False
            status = EXIT_BROKEN_PIPE
        except Exception as error:
            progress.close()
            status = report(error, args.debug)
            why, unsure = "stopped by the error above", True
        progress.close()
    if why:
        batched = not args.atomic and args.batch > 1
        print(tally.summary(why, args.atomic, unsure, batched), file=sys.stderr)
        return status
    return 1 if tally.rejected else 0
