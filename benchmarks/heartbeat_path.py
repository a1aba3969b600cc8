"""The CPU a heartbeat costs before its group commit (issue 26, docs/performance.md, "The CPU
a heartbeat costs its caller and the service"), no database: what ``ledger.append``'s caller
does before it queues (``validate_command``, ``Heartbeat.now``), and the service's whole
ASGI path for a request, from its gate to the answer (the token, the body, ``parse_command``
and its stamp, ``Heartbeat.now``, the hand-over to a group commit that answers at once, the
metrics, the answer; 32 requests at a time on one event loop, as 32 clients send them; no
uvicorn).

``python -m benchmarks.heartbeat_path [--count N] [--runs R]`` prints the microseconds of
process CPU a heartbeat, the minimum and the median of the runs. Run it on two trees
(``PYTHONPATH``) one after the other to compare them: it measures CPU, not time, so the
machine's load moves it less than a rate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import orjson

from ledger.commands.access import RecordPlayback
from ledger.commands.parsing import validate_command
from ledger.commands.results import Result
from ledger.http import commands
from ledger.http import config as http_config
from ledger.http.app import Front
from ledger.http.backend import Backend
from ledger.http.feed import Feed
from ledger.http.gate import Gate
from ledger.http.metrics import Metrics
from ledger.http.unexpected import CatchUnexpected
from ledger.playback.decide import Heartbeat

ACCEPTED = Result("accepted")


def _lines(count: int) -> list[bytes]:
    """The heartbeats ``benchmarks/serve.py`` sends: 400 viewers, an idempotency key each."""
    return [
        orjson.dumps(
            {
                "type": "playback.progress",
                "user_id": f"u{n % 400}",
                "content_id": str(UUID(int=n % 50)),
                "position_seconds": n // 400,
                "duration_seconds": 36_000,
                "idempotency_key": f"c32-{n}",
            }
        )
        for n in range(count)
    ]


def _per_item(work: Callable[[], None], count: int, runs: int) -> tuple[float, float]:
    spent = []
    for _ in range(runs):
        started = time.process_time()
        work()
        spent.append((time.process_time() - started) / count * 1e6)
    return min(spent), statistics.median(spent)


def caller(count: int, runs: int) -> tuple[float, float]:
    built = [
        RecordPlayback(
            user_id=f"u{n % 400}",
            content_id=UUID(int=n % 50),
            position_seconds=n // 400,
            duration_seconds=36_000,
            idempotency_key=f"k{n}",
        )
        for n in range(count)
    ]

    def work() -> None:
        for command in built:
            checked = validate_command(command)
            assert isinstance(checked, RecordPlayback)
            Heartbeat.now(checked)

    return _per_item(work, count, runs)


def asgi_path(count: int, runs: int) -> tuple[float, float]:
    backend = Backend.__new__(Backend)  # no database: only what a request's path reads
    backend.config = http_config.from_env({"LEDGER_API_TOKENS": "bench"})
    backend.metrics = Metrics()
    backend._feed = Feed(lambda items: [ACCEPTED] * len(items), 4096)
    app = Gate(
        Front(None, CatchUnexpected(commands.CommandEndpoint(backend))),  # type: ignore[arg-type]
        metrics=backend.metrics,
        limit=256,
        retry_after=1,
    )
    bodies = _lines(count)

    async def one(body: bytes) -> None:
        scope: dict[str, Any] = {
            "type": "http",
            "path": "/v1/commands",
            "method": "POST",
            "query_string": b"",
            "headers": [
                (b"host", b"bench"),
                (b"authorization", b"Bearer bench"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 201, sent

    async def clients() -> None:
        for start in range(0, count, 32):
            await asyncio.gather(*(one(b) for b in bodies[start : start + 32]))

    return _per_item(lambda: asyncio.run(clients()), count, runs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heartbeat_path")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name, measure in (
        ("ledger.append's caller: validate_command + Heartbeat.now", caller),
        ("the service's ASGI path, gate to answer, group answered at once", asgi_path),
    ):
        low, median = measure(args.count, args.runs)
        print(f"{name}: min {low:.1f} us, median {median:.1f} us a heartbeat")


if __name__ == "__main__":
    main()
