"""The read endpoints, the probes and the metrics on the real server: each answer equals
its CLI counterpart's (``audit revenue --format json``, ``ledger events``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from ledger.config import Settings
from projections import freshness
from tests import citus_support
from tests.serving import serve
from tests.support import CONTENT, answers, catalogue, cli, complete, grant, refund, t

Conn = psycopg.Connection[Any]


def test_access_answers_the_players_check(settings: Settings) -> None:
    with serve(settings) as served, served.client() as client:
        setup = [*catalogue(), complete("pi_1", customer="alice")]
        setup.append(
            grant("bob", access_type="preview", at=t(1, 12), expires="2026-01-02T00:00:00Z")
        )
        assert all(
            a["status"] == "accepted" for a in client.post("/v1/commands/batch", json=setup).json()
        )
        alice = client.get(f"/v1/access/alice/{CONTENT}")
        assert alice.status_code == 200
        assert alice.json() == {"allowed": True, "access_type": "purchased", "expires_at": None}
        bob = client.get(f"/v1/access/bob/{CONTENT}").json()
        assert bob == {
            "allowed": False,
            "access_type": "preview",
            "expires_at": "2026-01-02T00:00:00.000000+00:00",
        }
        nobody = client.get(f"/v1/access/nobody/{CONTENT}").json()
        assert nobody == {"allowed": False, "access_type": None, "expires_at": None}
        client.post("/v1/commands", json=refund("pi_1", "re_1", 1999))
        assert client.get(f"/v1/access/alice/{CONTENT}").json()["allowed"] is False
        bad = client.get("/v1/access/alice/not-a-uuid")
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "content_id"


def test_revenue_is_the_audit_reports_json(settings: Settings, cli_env: dict[str, str]) -> None:
    setup = [
        *catalogue(),
        complete("pi_1", at=t(2)),
        complete("pi_2", customer="bob", at=t(35)),
        refund("pi_1", "re_1", 500, at=t(40)),
    ]
    queries = [
        ({}, []),
        ({"group_by": "month"}, ["--group-by", "month"]),
        (
            {"from": "2026-02-01", "to": "2026-03-01"},
            ["--from", "2026-02-01", "--to", "2026-03-01"],
        ),
        ({"as_of": "2000-01-01"}, ["--as-of", "2000-01-01"]),
        (
            {"organization": "11111111-1111-4111-8111-111111111111", "group_by": "content"},
            ["--organization", "11111111-1111-4111-8111-111111111111", "--group-by", "content"],
        ),
    ]
    with serve(settings) as served, served.client() as client:
        client.post("/v1/commands/batch", json=setup)
        for params, flags in queries:
            answer = client.get("/v1/revenue", params=params)
            assert answer.status_code == 200
            done = cli(cli_env, "audit", "revenue", "--format", "json", *flags)
            assert answer.json() == json.loads(done.stdout), params
        assert client.get("/v1/revenue").json()["totals"][0]["net_cents"] == 1999 * 2 - 500
        for params, field in (
            ({"from": "yesterday"}, "from"),
            ({"from": "2026-03-01", "to": "2026-02-01"}, "to"),
            ({"group_by": "week"}, "group_by"),
            ({"organization": "acme"}, "organization"),
        ):
            answer = client.get("/v1/revenue", params=params)
            assert answer.status_code == 422, params
            assert answer.json()["error"]["field"] == field, answer.json()


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_events_are_the_records_of_ledger_events(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    with serve(settings) as served, served.client() as client:
        client.post("/v1/commands/batch", json=[*catalogue(), complete("pi_1")])
        everything = client.get("/v1/events", params={"limit": 1000}).json()
        assert everything["events"] == answers(cli(cli_env, "events").stdout)
        assert everything["next_after"] == everything["events"][-1]["position"]
        page = client.get("/v1/events", params={"after": 2, "limit": 3}).json()
        assert page["events"] == answers(
            cli(cli_env, "events", "--after", "2", "--limit", "3").stdout
        )
        assert page["next_after"] == 5
        users = client.get("/v1/events", params={"topic": "UserRegistered"}).json()
        expected = answers(cli(cli_env, "events", "--topic", "UserRegistered").stdout)
        assert users["events"] == expected and len(expected) == 3
        end = client.get("/v1/events", params={"after": 10_000}).json()
        assert end == {"events": [], "next_after": 10_000}
        for params, field in (
            ({"after": -1}, "after"),
            ({"limit": 0}, "limit"),
            ({"limit": 1001}, "limit"),
            ({"topic": "Nope"}, "topic"),
        ):
            answer = client.get("/v1/events", params=params)
            assert answer.status_code == 422 and answer.json()["error"]["field"] == field


def test_probes_and_metrics(settings: Settings, conn: Conn) -> None:
    with serve(settings) as served, served.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        with served.client() as authed:
            authed.post("/v1/commands/batch", json=catalogue())
            authed.post("/v1/commands", json=complete("pi_1"))
            authed.post("/v1/commands", json=complete("pi_1"))
            authed.post("/v1/commands", json=complete("pi_2", amount=0))
            authed.post("/v1/commands", content=b"x" * (1024 * 1024 + 1))
        text = client.get("/metrics").text
        assert 'ledger_commands_total{status="accepted",type="purchase.complete"} 1.0' in text
        assert 'ledger_commands_total{status="duplicate",type="purchase.complete"} 1.0' in text
        assert (
            'ledger_commands_total{status="validation_error",type="purchase.complete"} 1.0' in text
        )
        assert 'ledger_commands_total{status="accepted",type="user.register"} 3.0' in text
        assert 'ledger_http_refused_total{reason="too_large"} 1.0' in text
        assert re.search(r'ledger_append_seconds_count\{kind="command"\} 2\.0', text)
        assert 'ledger_projection_lag_events{projection="purchases"} 0.0' in text
        for name in (
            "ledger_group_commit_seconds",
            "ledger_group_commit_size",
            "ledger_stripe_events",
        ):
            assert f"# TYPE {name}" in text
        with conn.transaction():  # freshness.mark works in its caller's transaction
            freshness.mark(conn, settings.schema, ["purchases"], "a test marks it")
        stale = client.get("/readyz")
        assert stale.status_code == 503
        assert stale.json()["checks"]["projections"] == "stale purchases"
        assert 'ledger_projection_stale{projection="purchases"} 1.0' in client.get("/metrics").text


def test_in_flight_requests_are_bounded_with_503_and_retry_after(settings: Settings) -> None:
    with serve(settings, LEDGER_HTTP_MAX_IN_FLIGHT="2") as served:
        release = threading.Event()

        def slow_body() -> Any:  # holds its request in flight until released
            yield b"["
            release.wait(30)
            yield b"]"

        held: list[int] = []
        holders = [
            threading.Thread(
                target=lambda: held.append(
                    served.client().post("/v1/commands/batch", content=slow_body()).status_code
                )
            )
            for _ in range(2)
        ]
        for holder in holders:
            holder.start()
        with served.client() as client:
            deadline = time.monotonic() + 60  # a loaded machine starts threads slowly
            while "ledger_http_requests_in_flight 2.0" not in client.get("/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            refused = client.get(f"/v1/access/alice/{CONTENT}")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert client.get("/healthz").status_code == 200
            release.set()
            for holder in holders:
                holder.join()
            assert client.get(f"/v1/access/alice/{CONTENT}").status_code == 200
            assert (
                'ledger_http_refused_total{reason="overloaded"} 1.0' in client.get("/metrics").text
            )
    # the two held requests were let in, not refused: each answered once released
    assert held == [200, 200]  # an empty batch, answered with no results


def test_serve_refuses_an_unmigrated_database_in_one_line(cli_env: dict[str, str]) -> None:
    env = dict(cli_env, LEDGER_SCHEMA=f"{cli_env['LEDGER_SCHEMA']}_none")  # never created
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "not migrated" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.single_server(citus_support.GLOBAL_POSITION)
def test_commands_from_http_carry_their_provenance(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    with serve(settings) as served, served.client() as client:
        batch = client.post(
            "/v1/commands/batch", json=catalogue(), headers={"X-Request-Id": "load-1"}
        )
        assert {a["status"] for a in batch.json()} == {"accepted"}
        one = client.post("/v1/commands", json=complete("pi_1"), headers={"X-Request-Id": "req-7"})
        assert one.status_code == 201
        events = client.get("/v1/events", params={"correlation_id": "req-7"}).json()["events"]
        assert events == answers(cli(cli_env, "events", "--correlation-id", "req-7").stdout)
        assert {e["topic"] for e in events} >= {"PurchaseCompleted"}
        assert {(e["data"]["source"], e["data"]["correlation_id"]) for e in events} == {
            ("http", "req-7")
        }
        lines = client.get("/v1/events", params={"source": "http", "limit": 1000}).json()
        correlations = [e["data"]["correlation_id"] for e in lines["events"]]
        assert correlations[:5] == ["load-1:1", "load-1:2", "load-1:3", "load-1:4", "load-1:5"]
        assert client.get("/v1/events", params={"source": "cli"}).json()["events"] == []
        bad = client.get("/v1/events", params={"source": "fax"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "source"
        by_source = client.get("/v1/revenue", params={"source": "http"}).json()
        expected = json.loads(
            cli(cli_env, "audit", "revenue", "--format", "json", "--source", "http").stdout
        )
        assert by_source == expected and by_source["totals"][0]["purchases"] == 1
        assert client.get("/v1/revenue", params={"source": "fax"}).status_code == 422


def test_a_full_group_commit_queue_answers_503_and_writes_nothing(
    settings: Settings, conn: Conn
) -> None:
    import asyncio

    from tests.support import user

    with serve(settings, LEDGER_QUEUE_MAX="1") as served:

        async def burst() -> list[Any]:
            async with served.async_client() as client:
                return await asyncio.gather(
                    *(client.post("/v1/commands", json=user(f"u{n}")) for n in range(64))
                )

        answers = asyncio.run(burst())
    statuses = [a.status_code for a in answers]
    refused = [a for a in answers if a.status_code == 503]
    assert refused and set(statuses) <= {201, 503}, statuses
    assert {a.json()["error"]["code"] for a in refused} == {"overloaded"}
    assert all(a.headers["retry-after"] == "1" for a in refused)
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (statuses.count(201),)
