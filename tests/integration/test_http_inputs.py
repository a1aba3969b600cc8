"""What a request gives besides its body (issue 24, findings 5, 6 and 9): a NUL, control
or format character in a path or an id is a 422 naming the field, never a 500; the
``Idempotency-Key`` header is UTF-8 text, consistent with the body's key; unknown or
repeated query parameters are 422."""

from __future__ import annotations

import socket

from hypothesis import given
from hypothesis import strategies as st

from ledger.config import Settings
from tests.serving import TOKEN, Served, serve
from tests.support import CONTENT, CONTENT_2, catalogue, grant, publish, user


def raw(served: Served, request: bytes) -> tuple[int, bytes]:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    None,
                )
                if length is not None and len(body) >= length:
                    break
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def test_control_and_format_characters_in_ids_and_paths_are_422_naming_the_field(
    settings: Settings,
) -> None:
    with serve(settings) as served, served.client() as client:
        assert client.post("/v1/commands/batch", json=catalogue()).status_code == 200
        for bad in ("al%00ice", "al%01ice", "%E2%80%8B", "a%E2%80%AEb", "%20alice"):
            answer = client.get(f"/v1/access/{bad}/{CONTENT}")
            assert answer.status_code == 422, (bad, answer.text)
            assert answer.json()["error"]["field"] == "user_id"
        # ids made of, or holding, format characters, in commands over HTTP and JSON Lines
        for bad in ("\u200b", "a\u202eb", "x\ufeff"):
            answer = client.post("/v1/commands", json=user(bad))
            assert answer.status_code == 422, (bad, answer.text)
            assert answer.json()["error"]["field"] == "user_id"
            assert "format character" in answer.json()["error"]["message"]
            answer = client.post(
                "/v1/commands", json=grant("alice"), headers={"Idempotency-Key": "k\u200b".encode()}
            )
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["field"] == "idempotency_key"
        # a query value holding a NUL or a format character
        for query in ("correlation_id=a%00b", "idempotency_key=%E2%80%AE"):
            answer = client.get(f"/v1/events?{query}")
            assert answer.status_code == 422, (query, answer.text)
            assert answer.json()["error"]["field"] == query.split("=")[0]
        # a text field may hold format characters (a title with a right-to-left mark)
        titled = {**publish(CONTENT_2), "title": "‮A video"}
        assert client.post("/v1/commands", json=titled).status_code == 201
        assert "Traceback" not in served.log()


def test_the_idempotency_key_header_is_utf8_like_the_bodys(settings: Settings) -> None:
    """Before, ``café-x`` in the header was read as latin-1 (``cafÃ©-x``), and the same
    key in the body was then refused as a different one."""
    with serve(settings) as served, served.client() as client:
        assert client.post("/v1/commands/batch", json=catalogue()).status_code == 200
        key = "café-x"
        headers = {"Idempotency-Key": key.encode()}
        first = client.post("/v1/commands", json=grant("alice"), headers=headers)
        assert first.status_code == 201, first.text
        both = client.post(
            "/v1/commands", json={**grant("alice"), "idempotency_key": key}, headers=headers
        )
        assert both.status_code == 200, both.text  # the same key: a duplicate
        events = client.get(f"/v1/events?idempotency_key={key}").json()["events"]
        assert events and {e["data"]["idempotency_key"] for e in events} == {key}
        # bytes that are not UTF-8
        status, body = raw(
            served,
            b"POST /v1/commands HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nIdempotency-Key: caf\xe9\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n{}",
        )
        assert status == 422, body
        assert b'"field":"idempotency_key"' in body


def test_unknown_or_repeated_query_parameters_are_422(settings: Settings) -> None:
    """Before, ``?Atomic=true`` and ``?atomic=true&atomic=false`` ran a batch that was
    asked to be atomic one command at a time."""
    with serve(settings) as served, served.client() as client:
        assert client.post("/v1/commands/batch", json=catalogue()).status_code == 200
        batch = [user("x1"), user("x1", at="not a time")]
        for query, field in (
            ("Atomic=true", "Atomic"),
            ("atomic=true&atomic=false", "atomic"),
            ("atomic=true&limit=3", "limit"),
        ):
            answer = client.post(f"/v1/commands/batch?{query}", json=batch)
            assert answer.status_code == 422, (query, answer.text)
            assert answer.json()["error"]["field"] == field
        for path in (
            "/v1/revenue?group_by=month&group_by=day",
            "/v1/events?after=1&after=2",
            "/v1/events?colour=red",
            f"/v1/access/alice/{CONTENT}?at=now",
        ):
            assert client.get(path).status_code == 422, path
        assert client.post("/v1/commands?atomic=true", json=user("y")).status_code == 422
        # the repeatable one stays repeatable
        assert (
            client.get("/v1/events?topic=UserRegistered&topic=ContentPublished").status_code == 200
        )
        # nothing of the refused batches was written
        assert client.get("/v1/events?idempotency_key=x").status_code == 200
        # (the log names people by subject: their export says whether they exist)
        for person in ("x1", "y"):
            assert client.get(f"/v1/users/{person}/export").status_code == 404, person


@given(st.text(min_size=1, max_size=20))
def test_any_user_id_in_the_access_path_is_answered_never_500(text: str) -> None:
    """A property over the rule the path and the commands share (``check_id``): any text
    is either an id or refused with the field named; hypothesis drives the pure rule, the
    server tests above the HTTP answers."""
    from ledger.http.answers import BadRequest
    from ledger.http.inputs import checked_id

    try:
        assert checked_id(text, "user_id") == text
    except BadRequest as error:
        assert error.field == "user_id"
        assert error.message.startswith("user_id: ")
    else:
        import unicodedata

        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in text)
        assert text == text.strip()
