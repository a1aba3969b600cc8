"""``ledger append [FILE|-] [--atomic]``: JSON Lines in, one result line out per line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from ledger import api
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


def run(args: argparse.Namespace) -> int:
    settings = api.settings(args.database_url, args.schema)
    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as error:
        raise ConfigurationError(f"cannot read {args.file}: {error.strerror}") from None
    rejected = False
    with source, api.open_ledger(settings) as ledger:
        out = sys.stdout.buffer
        for number, result in api.append_lines(ledger, source, atomic=args.atomic):
            rejected = rejected or result.status in ("rejected", "rolled_back")
            out.write(orjson.dumps(result.as_dict(number)) + b"\n")
            out.flush()
    return 1 if rejected else 0
