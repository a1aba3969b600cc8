"""POST /v1/commands in front of FastAPI (``CommandEndpoint``, ``ledger.http.feed``) makes the
same checks as the routes behind it: the first of a repeated header counts, the token before
the body's bound, the request id echoed on every answer, only POST /v1/commands taken, and the
OpenAPI document describing its route (the headers' part of ``test_http_feed.py``).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from ledger.config import Settings
from tests.serving import TOKEN, serve
from tests.support import catalogue, grant, play, user

Conn = psycopg.Connection[Any]


# --- POST /v1/commands in front of FastAPI: the same checks as the routes behind it ------

MIB = 1024 * 1024


def test_the_first_of_two_authorization_headers_counts_on_every_path(settings: Settings) -> None:
    """The fast path reads the headers itself: it takes the first of a repeated header,
    as Starlette does for the routes behind it, so a request is allowed or refused the
    same whichever path serves it."""
    good, bad = ("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer wrong")
    with serve(settings) as served, served.client(None) as client:
        for first, second, expected in ((good, bad, (201, 200, 200)), (bad, good, (401,) * 3)):
            headers = [first, second]
            one = client.post("/v1/commands", json=user(f"u{expected[0]}"), headers=headers)
            batch = client.post("/v1/commands/batch", json=[], headers=headers)
            events = client.get("/v1/events", headers=headers)
            assert (one.status_code, batch.status_code, events.status_code) == expected
            if expected[0] == 401:
                assert one.headers["www-authenticate"] == "Bearer"
                assert one.json() == batch.json() == events.json()


def test_the_first_of_two_idempotency_key_headers_is_the_commands_key(
    settings: Settings, conn: Conn
) -> None:
    """A heartbeat without ``occurred_at`` is known by its key alone: sent with keys k1
    then k2 it is recorded under k1, so k1 again is a duplicate and k2 a new heartbeat."""
    beat = play("alice", 5)
    del beat["occurred_at"]
    with serve(settings) as served, served.client() as client:
        setup_answers = client.post("/v1/commands/batch", json=[*catalogue(), grant("alice")])
        assert {a["status"] for a in setup_answers.json()} == {"accepted"}
        both = [("Idempotency-Key", "k1"), ("Idempotency-Key", "k2")]
        assert client.post("/v1/commands", json=beat, headers=both).status_code == 201
        k1 = client.post("/v1/commands", json=beat, headers={"Idempotency-Key": "k1"})
        k2 = client.post("/v1/commands", json=beat, headers={"Idempotency-Key": "k2"})
        assert (k1.status_code, k2.status_code) == (200, 201)
    assert conn.execute("SELECT count(*) FROM playback_heartbeats").fetchone() == (2,)


def test_the_token_is_checked_before_the_bodys_bound_on_every_path(settings: Settings) -> None:
    """Without a token a body above its bound is 401, not 413, on the fast path as on the
    batch route: nobody learns the bounds, nor costs the service a read, without a token.
    Each refusal is counted once, by its reason."""
    oversized = {"Content-Length": str(MIB + 1), "Content-Type": "application/json"}
    with serve(settings, LEDGER_HTTP_MAX_BATCH_BYTES=str(MIB)) as served:
        for token, status in ((None, 401), (TOKEN, 413)):
            with served.client(token) as client:
                for path in ("/v1/commands", "/v1/commands/batch"):
                    answer = client.post(path, content=b" " * (MIB + 1), headers=oversized)
                    assert answer.status_code == status, (token, path)
        with served.client(None) as probe:
            text = probe.get("/metrics").text
    assert 'ledger_http_refused_total{reason="unauthorized"} 2.0' in text
    assert 'ledger_http_refused_total{reason="too_large"} 2.0' in text


def test_the_fast_path_echoes_the_request_id_on_every_answer(settings: Settings) -> None:
    tagged = {"X-Request-Id": "req-fast-1"}
    with serve(settings) as served, served.client() as client, served.client(None) as anonymous:
        answers = [
            client.post("/v1/commands", json=user("a"), headers=tagged),
            client.post("/v1/commands", json=user("a"), headers=tagged),
            client.post("/v1/commands", content=b"{oops", headers=tagged),
            client.post("/v1/commands", content=b" " * (MIB + 1), headers=tagged),
            anonymous.post("/v1/commands", json=user("b"), headers=tagged),
        ]
        assert [a.status_code for a in answers] == [201, 200, 422, 413, 401]
        assert {a.headers["x-request-id"] for a in answers} == {"req-fast-1"}
        made = client.post("/v1/commands", json=user("c"), headers={"X-Request-Id": "a b"})
    assert made.status_code == 201
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])


def test_only_post_v1_commands_takes_the_fast_path(settings: Settings) -> None:
    """Another method on the same path, or another path, is FastAPI's: 405 and 404 as
    result objects; a query string does not change the path: the fast path refuses it,
    as every endpoint refuses a query parameter it does not declare (issue 24)."""
    with serve(settings) as served, served.client() as client:
        refused = client.post("/v1/commands?x=1", json=user("a"))
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "x"
        assert client.post("/v1/commands", json=user("a")).status_code == 201
        wrong_method = client.get("/v1/commands")
        assert wrong_method.status_code == 405
        assert wrong_method.json()["status"] == "rejected"
        assert client.post("/v1/commandsx", json=user("b")).status_code == 404


def test_the_openapi_document_describes_the_fast_paths_route(settings: Settings) -> None:
    """The fast path answers ``POST /v1/commands`` without FastAPI, yet the document still
    describes it, with its token, its header and every status it answers."""
    with serve(settings) as served, served.client(None) as client:
        document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/commands"]["post"]
    assert operation["security"] == [{"bearer": []}]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"Idempotency-Key"}
    assert set(operation["responses"]) >= {
        "200",
        "201",
        "401",
        "403",
        "404",
        "409",
        "413",
        "422",
        "503",
    }
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "discriminator" in schema
