"""A database connection lost under the service (issue 24, finding 3): after
``pg_terminate_backend`` of every connection the service holds (what a restart or a
failover does), commands and reads answer 503 with ``Retry-After`` or succeed, never 500,
and the service recovers by itself."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import make_conninfo

from ledger.config import Settings
from ledger.log.datastore import CHECK_IDLE_S
from tests.serving import Served, serve
from tests.support import CONTENT, catalogue, complete, user

ATTEMPTS = 12


def terminate(url: str, application: str) -> int:
    """Ends every backend of the service (recognised by its application name)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application,),
        ).fetchall()
    return len(rows)


def judged(answer: httpx.Response) -> bool:
    """True when the request succeeded; a 503 must carry Retry-After; nothing else."""
    if answer.status_code == 503:
        assert answer.headers.get("retry-after"), answer.text
        assert answer.json()["error"]["code"] in ("unavailable", "overloaded"), answer.text
        return False
    assert answer.status_code in (200, 201), (answer.status_code, answer.text)
    return True


def requests(client: httpx.Client, n: int) -> list[tuple[str, httpx.Response]]:
    return [
        ("command", client.post("/v1/commands", json=user(f"u{n}"))),
        (
            "batch",
            client.post("/v1/commands/batch", json=[user(f"b{n}"), complete(f"pi_{n}")]),
        ),
        ("access", client.get(f"/v1/access/alice/{CONTENT}")),
        ("revenue", client.get("/v1/revenue")),
        ("events", client.get("/v1/events?limit=5")),
    ]


def settle(client: httpx.Client, served: Served, first: int) -> dict[str, int]:
    """Sends each kind of request until it succeeds; returns how many 503s each took."""
    refused: dict[str, int] = {}
    for attempt in range(ATTEMPTS):
        pending = False
        for kind, answer in requests(client, first + attempt):
            if refused.get(kind, 0) < 0:
                continue  # already succeeded
            if judged(answer):
                refused[kind] = -1 - refused.get(kind, 0)
            else:
                refused[kind] = refused.get(kind, 0) + 1
                pending = True
        if not pending:
            break
        time.sleep(0.2)  # the client's backoff, as Retry-After asks
    assert all(value < 0 for value in refused.values()), refused
    return {kind: -1 - value for kind, value in refused.items()}


def test_terminated_connections_answer_503_or_succeed_and_the_service_recovers(
    settings: Settings,
) -> None:
    application = f"ledger_test_{uuid.uuid4().hex[:12]}"
    url = make_conninfo(settings.url, application_name=application)
    with serve(settings, LEDGER_DATABASE_URL=url, LEDGER_HTTP_READ_POOL_SIZE="2") as served:
        with served.client() as client:
            setup = client.post("/v1/commands/batch", json=catalogue())
            assert {a["status"] for a in setup.json()} == {"accepted"}
            settle(client, served, 0)  # every pool holds connections now
            for round_ in range(1, 4):
                assert terminate(settings.url, application) > 0
                settle(client, served, round_ * 100)
            # afterwards, everything succeeds at the first attempt
            for kind, answer in requests(client, 1000):
                assert answer.status_code in (200, 201), (kind, answer.text)
            assert client.get("/readyz").json()["ready"] is True
        log = served.log()
    assert "internal_error" not in log
    assert "Traceback" not in log


def test_reads_check_their_connection_before_use(settings: Settings) -> None:
    """The read pool hands out no dead connection: after the termination, the next reads
    succeed at once (the check replaces the dead connection before the read uses it)."""
    application = f"ledger_test_{uuid.uuid4().hex[:12]}"
    url = make_conninfo(settings.url, application_name=application)
    with (
        serve(settings, LEDGER_DATABASE_URL=url, LEDGER_HTTP_READ_POOL_SIZE="1") as served,
        served.client() as client,
    ):
        assert client.get("/v1/revenue").status_code == 200
        # idle for the check's threshold (measured from before the answer was sent), so
        # that the next checkout checks it: a wait for that moment, not a margin
        time.sleep(CHECK_IDLE_S)
        assert terminate(settings.url, application) > 0
        answers: list[Any] = [client.get("/v1/revenue").status_code for _ in range(3)]
    assert answers == [200, 200, 200]
