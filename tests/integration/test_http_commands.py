"""``POST /v1/commands`` and ``/v1/commands/batch`` on the real server: every status the
result implies, the Idempotency-Key header, bearer tokens, bounds, and batches answered
as ``ledger append`` answers the same lines."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg

from ledger.commands.by_type import COMMAND_TYPES
from ledger.config import Settings
from tests.serving import serve
from tests.support import (
    CONTENT,
    answers,
    catalogue,
    cli,
    complete,
    event_count,
    play,
    refund,
    user,
)

Conn = psycopg.Connection[Any]


def post(client: httpx.Client, command: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/v1/commands", content=json.dumps(command), headers=headers)


def test_each_result_answers_its_status(settings: Settings, conn: Conn) -> None:
    with serve(settings) as served, served.client() as client:
        for command in catalogue():
            assert post(client, command).status_code == 201
        accepted = post(client, complete("pi_1"))
        assert accepted.status_code == 201
        assert accepted.json() == {"status": "accepted", "position": event_count(conn)}
        assert post(client, complete("pi_1")).json() == {"status": "duplicate"}
        assert post(client, complete("pi_1")).status_code == 200
        expectations = [
            (complete("pi_1", amount=2999, fees=(299, 800)), 409, "conflict"),
            (refund("pi_1", "re_1", 5000), 409, "invalid_state"),
            (refund("pi_none", "re_2", 100), 404, "not_found"),
            (play("bob", 10), 403, "no_access"),
            (complete("pi_2", amount=-1), 422, "validation_error"),
            ({"type": "nothing"}, 422, "validation_error"),
        ]
        for command, status, code in expectations:
            answer = post(client, command)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), command
            assert answer.json()["status"] == "rejected"
        malformed = client.post("/v1/commands", content=b"{oops")
        assert malformed.status_code == 422
        assert malformed.json()["error"]["message"].startswith("malformed JSON")
        twice = client.post(
            "/v1/commands", content=b'{"type":"user.register","user_id":"a","user_id":"b"}'
        )
        assert twice.json()["error"] == {
            "code": "validation_error",
            "message": "user_id: the key appears twice in one object",
            "field": "user_id",
        }
    with psycopg.connect(settings.url) as check:
        check.execute(f"SET search_path TO {settings.schema}")
        rows = check.execute("SELECT stripe_payment_intent_id FROM purchases").fetchall()
    assert rows == [("pi_1",)]


def test_the_idempotency_key_header_is_the_commands_key(settings: Settings, conn: Conn) -> None:
    with serve(settings) as served, served.client() as client:
        post(client, user("alice"))
        grant = {
            "type": "access.grant",
            "user_id": "alice",
            "content_id": str(uuid.uuid4()),
            "access_type": "preview",
        }
        # no occurred_at: without a key the grant has no natural key and is refused
        assert post(client, grant).status_code == 422
        assert post(client, grant, **{"Idempotency-Key": "g-1"}).status_code == 404  # no content
        for command in catalogue()[:-2] + catalogue()[-1:]:
            post(client, command)
        grant["content_id"] = CONTENT
        first = post(client, grant, **{"Idempotency-Key": "g-2"})
        again = post(client, grant, **{"Idempotency-Key": "g-2"})
        assert (first.status_code, again.status_code) == (201, 200)
        same = post(client, grant | {"idempotency_key": "g-2"}, **{"Idempotency-Key": "g-2"})
        assert same.status_code == 200
        mismatch = post(client, grant | {"idempotency_key": "g-3"}, **{"Idempotency-Key": "g-2"})
        assert mismatch.status_code == 422
        assert mismatch.json()["error"]["field"] == "idempotency_key"
        bad = post(client, grant, **{"Idempotency-Key": "k" * 256})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "idempotency_key"
    keys = conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic = 'AccessGranted'"
    ).fetchone()
    assert keys == (1,)


def test_tokens_are_required_on_v1_and_compared_exactly(settings: Settings, conn: Conn) -> None:
    with serve(settings) as served:
        for token in (None, "wrong", "test-token-1x", "test-token"):
            with served.client(token) as client:
                answer = post(client, user("mallory"))
                assert answer.status_code == 401
                assert answer.headers["www-authenticate"] == "Bearer"
                assert answer.json()["error"]["code"] == "unauthorized"
                assert client.get("/v1/events").status_code == 401
                assert client.get("/v1/revenue").status_code == 401
                assert client.get(f"/v1/access/a/{CONTENT}").status_code == 401
                assert client.get("/healthz").status_code == 200
        with served.client("test-token-2") as client:
            assert post(client, user("alice")).status_code == 201
        with httpx.Client(base_url=served.url) as raw:
            basic = raw.post(
                "/v1/commands",
                content=json.dumps(user("x")),
                headers={"Authorization": "Basic dGVzdA=="},
            )
            assert basic.status_code == 401
    assert event_count(conn) == 1


def test_bodies_beyond_their_bounds_answer_413_and_write_nothing(
    settings: Settings, conn: Conn
) -> None:
    limits = {"LEDGER_HTTP_MAX_BATCH_COMMANDS": "3", "LEDGER_HTTP_MAX_BATCH_BYTES": "4096"}
    with serve(settings, **limits) as served, served.client() as client:
        huge = json.dumps(user("x" * (1024 * 1024)))
        answer = client.post("/v1/commands", content=huge)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "too_large"

        def chunks() -> Any:  # no Content-Length: the bound holds while reading
            for _ in range(1100):
                yield b" " * 1024

        streamed = client.post("/v1/commands", content=chunks())
        assert streamed.status_code == 413
        four = [user(f"u{n}") for n in range(4)]
        assert client.post("/v1/commands/batch", json=four).status_code == 413
        big = [user("y" * 2000), user("z" * 2000), user("w" * 2000)]
        assert client.post("/v1/commands/batch", json=big).status_code == 413
        three = client.post("/v1/commands/batch", json=four[:3])
        assert three.status_code == 200
        assert [a["status"] for a in three.json()] == ["accepted"] * 3
    assert event_count(conn) == 3


def test_a_batch_is_answered_as_ledger_append_answers_its_lines(
    settings: Settings, cli_env: dict[str, str], database_url: str
) -> None:
    commands = [*catalogue(), complete("pi_1"), complete("pi_1"), refund("pi_x", "re_1", 10)]
    text = (
        "".join(json.dumps(c) + "\n" for c in commands[:3])
        + "\n"
        + "{oops\n"
        + "".join(json.dumps(c) + "\n" for c in commands[3:])
    )
    with serve(settings) as served, served.client() as client:
        ndjson = client.post(
            "/v1/commands/batch",
            content=text.encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert ndjson.status_code == 200
    other = Settings(url=database_url, schema=f"{settings.schema}_cli")
    from ledger import api

    api.upgrade(other)
    try:
        env = dict(cli_env, LEDGER_SCHEMA=other.schema)
        expected = answers(cli(env, "append", stdin=text).stdout)
    finally:
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {other.schema} CASCADE")
    assert ndjson.json() == expected
    assert [a["line"] for a in expected] == [1, 2, 3, 5, 6, 7, 8, 9, 10]


def test_json_array_batches_and_atomic_all_or_nothing(settings: Settings, conn: Conn) -> None:
    with serve(settings) as served, served.client() as client:
        rolled = client.post(
            "/v1/commands/batch?atomic=true", json=[*catalogue(), complete("pi_1", amount=0)]
        )
        assert rolled.status_code == 200
        assert [a["status"] for a in rolled.json()] == ["rolled_back"] * 5 + ["rejected"]
        assert event_count(conn) == 0
        done = client.post("/v1/commands/batch?atomic=true", json=[*catalogue(), complete("pi_1")])
        assert [a["status"] for a in done.json()] == ["accepted"] * 6
        assert [a["line"] for a in done.json()] == [1, 2, 3, 4, 5, 6]
        twice = client.post(
            "/v1/commands/batch",
            content=b'[{"type":"user.register","user_id":"a","user_id":"b"}, 7]',
            headers={"Content-Type": "application/json"},
        )
        assert [a["error"]["code"] for a in twice.json()] == ["validation_error"] * 2
        assert twice.json()[0]["error"]["field"] == "user_id"
        for body in (b'{"type": "user.register"}', b"[1, 2", b"[1] 2", b"\xff"):
            answer = client.post("/v1/commands/batch", content=body)
            assert answer.status_code == 422, body
            assert answer.json()["error"]["code"] == "validation_error"
        assert client.post("/v1/commands/batch", json=[]).json() == []


def test_the_openapi_document_holds_the_command_models(settings: Settings) -> None:
    with serve(settings) as served, served.client(None) as client:
        document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for kind, model in COMMAND_TYPES.items():
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        own.pop("$defs", None)
        assert schemas[model.__name__] == own, kind
    body = document["paths"]["/v1/commands"]["post"]["requestBody"]["content"]
    mapping = body["application/json"]["schema"]["discriminator"]["mapping"]
    assert set(mapping) == set(COMMAND_TYPES)
    batch = document["paths"]["/v1/commands/batch"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(batch)
    assert document["paths"]["/v1/events"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_a_request_id_is_echoed_or_made(settings: Settings) -> None:
    with serve(settings) as served, served.client() as client:
        given = client.get("/healthz", headers={"X-Request-Id": "req-42"})
        assert given.headers["x-request-id"] == "req-42"
        made = client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
        assert len(made.headers["x-request-id"]) == 32
        unknown = client.get("/v1/nothing")
        assert unknown.status_code == 404
        assert unknown.json()["status"] == "rejected"
