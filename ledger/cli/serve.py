"""``ledger serve [--host 127.0.0.1] [--port 8080]``: the HTTP service (docs/service.md).

Exit statuses: 0 after SIGTERM (requests in flight answered first), 130 after SIGINT, 2
when the database is not ready (not migrated, stale projections, unreachable) or a
setting is wrong.
"""

from __future__ import annotations

import argparse
from typing import Any

from ledger import api


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    parser = groups.add_parser(
        "serve",
        parents=[common],
        help="serve the ledger over HTTP",
        description="The HTTP service the checkout flow, Stripe and the video player call. "
        "Bearer tokens come from LEDGER_API_TOKENS (docs/service.md).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=_port, default=8080, help="port to listen on (default 8080; 0: any free)"
    )
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number 0 to 65535, not {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from ledger.http import config
    from ledger.http.server import serve

    settings = api.settings(args.database_url, args.schema)
    return serve(settings, config.from_env(), args.host, args.port)
