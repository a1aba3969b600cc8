"""``ledger append [FILE|-] [--atomic]``: JSON Lines in, one result line out per line.

Each answer is written and flushed once its line is settled (committed, a duplicate, or
rejected). Stopped early (a signal, a lost connection, stdout closed), it still writes every
answer it owes, and its last line on stderr says how far it got and where to resume.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from ledger import api
from ledger.cli.errors import EXIT_BROKEN_PIPE, report, silence_stdout
from ledger.cli.progress import AppendProgress
from ledger.cli.signals import GUARD, Interrupted
from ledger.config import ConfigurationError


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    parser = groups.add_parser(
        "append", parents=[common], help="append checkout commands (JSON Lines)"
    )
    parser.add_argument("file", nargs="?", default="-", help="a JSON Lines file, or - for stdin")
    parser.add_argument(
        "--atomic", action="store_true", help="the whole input in one transaction: all or nothing"
    )
    parser.set_defaults(func=run)


@dataclass
class _Tally:
    """How far the run got: answers written, and the lines they settled."""

    answers: int = 0
    last_line: int = 0  # the last line answered
    settled: int = 0  # the last line settled, answered or not
    rejected: bool = False

    def summary(self, why: str, atomic: bool, unsure: bool) -> str:
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
        if self.settled > self.last_line:
            done += f"; line {self.settled} was settled but its answer was lost"
        text = f"ledger: {why}: {done}; the first line not committed is line {self.settled + 1}"
        if unsure:
            text += " (it may have committed without its answer: sending it again is safe)"
        return text


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
                lines = GUARD.released(source)
                for number, result in api.append_lines(
                    ledger, lines, atomic=args.atomic, source="cli", name=args.file
                ):
                    tally.settled = number
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
        print(tally.summary(why, args.atomic, unsure), file=sys.stderr)
        return status
    return 1 if tally.rejected else 0
