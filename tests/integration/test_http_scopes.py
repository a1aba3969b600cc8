"""Scoped tokens (issue 24, finding 4): each token holds scopes and may be bound to one
organization; a wrong scope or another organization's command is 403 ``forbidden`` and
writes nothing; a bound token's reads are limited by the database's row-level security
(the reader role), not only by Python; a malformed ``LEDGER_API_TOKENS`` stops the
service at start in one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ledger.config import Settings
from ledger.database.connections import connect
from ledger.database.roles import create_roles
from tests.integration.test_roles import drop_roles
from tests.serving import serve, server_env
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG,
    ORG_2,
    catalogue,
    complete,
    grant,
    org,
    publish,
    refund,
    user,
)

FULL = "full-token"
PLAYER = "player-token"
FINANCE = "finance-token"
BOUND = "bound-token"  # checkout backend of ORG only


@pytest.fixture
def reader_role(settings: Settings) -> Iterator[str]:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    with connect(settings, autocommit=True) as conn:
        names = create_roles(conn, settings.schema, prefix)
    yield names["reader"]
    drop_roles(settings, names.values())


def tokens(bound: bool = True) -> str:
    entries = [FULL, f"{PLAYER}:access", f"{FINANCE}:read"]
    if bound:
        entries.append(f"{BOUND}:commands+access+read:{ORG}")
    return ",".join(entries)


def event_count(client: httpx.Client) -> int:
    return len(client.get("/v1/events?limit=1000").json()["events"])


def forbidden(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 403, (answer.status_code, answer.text)
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == "forbidden"
    return error


def test_each_scope_opens_its_endpoints_only(settings: Settings) -> None:
    with serve(settings, LEDGER_API_TOKENS=tokens(bound=False)) as served:
        with (
            served.client(FULL) as full,
            served.client(PLAYER) as player,
            served.client(FINANCE) as finance,
        ):
            assert full.post("/v1/commands/batch", json=catalogue()).status_code == 200
            before = event_count(full)
            # the player's token checks access, and nothing else
            assert player.get(f"/v1/access/alice/{CONTENT}").status_code == 200
            forbidden(player.post("/v1/commands", json=user("mallory")))
            forbidden(player.post("/v1/commands/batch", json=[user("mallory")]))
            forbidden(player.get("/v1/revenue"))
            forbidden(player.get("/v1/events"))
            # finance reads revenue and events, and writes nothing
            assert finance.get("/v1/revenue").status_code == 200
            assert finance.get("/v1/events").status_code == 200
            forbidden(finance.post("/v1/commands", json=user("mallory")))
            forbidden(finance.get(f"/v1/access/alice/{CONTENT}"))
            assert event_count(full) == before
            metrics = full.get("/metrics").text
        assert 'ledger_http_refused_total{reason="forbidden"} 6.0' in metrics


def test_a_token_bound_to_an_organization_writes_and_reads_only_its_own(
    settings: Settings, reader_role: str
) -> None:
    with serve(settings, LEDGER_API_TOKENS=tokens(), LEDGER_HTTP_TENANT_ROLE=reader_role) as served:  # noqa: SIM117
        with served.client(FULL) as full, served.client(BOUND) as bound:
            setup = [
                *catalogue(),
                org(ORG_2, "Other"),
                publish(CONTENT_2, ORG_2, title="Theirs"),
                complete("pi_theirs", customer="bob", content_id=CONTENT_2),
                grant("alice", CONTENT_2),
            ]
            assert {a["status"] for a in full.post("/v1/commands/batch", json=setup).json()} == {
                "accepted"
            }
            before = event_count(full)
            refused = {
                "content_id": complete("pi_x", content_id=CONTENT_2),
                "organization_id": publish(str(uuid.uuid4()), ORG_2),
                "stripe_payment_intent_id": refund("pi_theirs", "re_1", 100),
            }
            for field, command in refused.items():
                assert forbidden(bound.post("/v1/commands", json=command))["field"] == field
            forbidden(bound.post("/v1/commands", json={"type": "user.delete", "user_id": "bob"}))
            error = forbidden(
                bound.post(
                    "/v1/commands/batch",
                    json=[user("dora"), complete("pi_y", content_id=CONTENT_2)],
                )
            )
            assert error["message"].startswith("line 2:")
            assert event_count(full) == before  # nothing written
            # its own organization's commands, and users, are accepted
            assert bound.post("/v1/commands", json=user("dora")).status_code == 201
            assert bound.post("/v1/commands", json=complete("pi_mine")).status_code == 201
            assert (
                bound.post("/v1/commands", json=refund("pi_mine", "re_2", 100)).status_code == 201
            )
            assert bound.post("/v1/commands", json=publish(str(uuid.uuid4()))).status_code == 201
            # reads: its revenue, its events, its access rows
            totals = bound.get("/v1/revenue").json()["totals"]
            assert [(t["purchases"], t["gross_cents"]) for t in totals] == [(1, 1999)]
            forbidden(bound.get(f"/v1/revenue?organization={ORG_2}"))
            assert bound.get(f"/v1/revenue?organization={ORG}").json()["totals"] == totals
            everything = full.get("/v1/events?limit=1000").json()["events"]
            mine = bound.get("/v1/events?limit=1000").json()["events"]
            assert mine, "the bound token reads its organization's events"
            assert {e["data"].get("organization_id") for e in mine} == {ORG}
            assert len(mine) < len(everything)
            assert full.get(f"/v1/access/alice/{CONTENT_2}").json()["allowed"] is True
            assert bound.get(f"/v1/access/alice/{CONTENT_2}").json()["allowed"] is False
            assert bound.get(f"/v1/access/alice/{CONTENT}").json()["allowed"] is True


def test_a_bound_token_without_the_reader_role_stops_the_service_at_start(
    settings: Settings,
) -> None:
    env = server_env(
        settings,
        {"LEDGER_API_TOKENS": f"t:read:{ORG}", "LEDGER_HTTP_TENANT_ROLE": "no_such_role_i24"},
    )
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "no_such_role_i24" in done.stderr and "ledger db roles" in done.stderr


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("tok:write", "entry 1 names an unknown scope 'write'"),
        ("a,tok:read:not-a-uuid", "entry 2 has an organization 'not-a-uuid' that is not a UUID"),
        ("tok:read:" + ORG + ":x", "entry 1 has more than three parts"),
        (":read", "entry 1 has no token"),
        ("tok:read+read", "entry 1 names a scope twice"),
        ("a,a:read", "entry 2 repeats the token"),
        ("tök", "entry 1 has a token that is not"),
    ],
)
def test_a_malformed_token_setting_is_one_line_and_exit_2(
    settings: Settings, setting: str, says: str
) -> None:
    env = server_env(settings, {"LEDGER_API_TOKENS": setting})
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert says in done.stderr
    assert "LEDGER_API_TOKENS" in done.stderr
    secret = setting.split(":")[0].split(",")[-1]
    if len(secret) > 3:
        assert secret not in done.stderr.replace("LEDGER_API_TOKENS", "")
