"""The service bounded against any client, without a proxy in front (issue 24, findings 1,
2 and 8), tested against the real server process: a header section over its bound is
answered 431 at once with the server's memory unmoved; header sections and bodies that
do not arrive in time are answered 408; a connection that sends nothing, and an idle
keep-alive connection, are closed; beyond the connections served, answers stay JSON with
``Retry-After`` and ``/healthz`` keeps answering; SIGTERM waits for a stalled upload no
longer than the body's time limit and answers it in JSON, with no traceback."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress

import psutil

from ledger.config import Settings
from tests.serving import TOKEN, Served, serve
from tests.support import user

MIB = 1024 * 1024


def connect(served: Served) -> socket.socket:
    host, port = served.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def read_answer(sock: socket.socket, within: float = 30) -> tuple[int, dict[str, str], bytes]:
    """The one answer the server writes before closing the connection: status, headers,
    body. Waits for the server's close (an event), at most ``within`` seconds."""
    sock.settimeout(within)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return status, {k.lower(): v for k, v in headers.items()}, body


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent until it closed the connection; fails if it stays open."""
    started = time.monotonic()
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {seconds} s") from None
    except ConnectionResetError:
        pass
    assert time.monotonic() - started <= seconds
    return data


def rss(served: Served) -> int:
    return int(psutil.Process(served.process.pid).memory_info().rss)


def wait_in_flight(served: Served) -> None:
    deadline = time.monotonic() + 30
    with served.client(None) as probe:
        while True:
            text = probe.get("/metrics").text
            line = next(
                x for x in text.splitlines() if x.startswith("ledger_http_requests_in_flight ")
            )
            if float(line.split()[1]) >= 1:
                return
            assert time.monotonic() < deadline, "the request never got in flight"
            time.sleep(0.01)


def healthz_answers(served: Served) -> None:
    with served.client(None) as probe:
        answer = probe.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_a_header_section_over_the_bound_is_answered_431_and_memory_stays_put(
    settings: Settings,
) -> None:
    """Finding 1: a header line that never ends. Before, the server buffered all of it
    (128 MiB: 71 -> 307 MB of memory, /healthz timing out); now the parser gets at most
    LEDGER_HTTP_MAX_HEADER_BYTES, and the request is answered 431 at once."""
    with serve(settings, LEDGER_HTTP_MAX_HEADER_BYTES="8192") as served:
        healthz_answers(served)
        before = rss(served)
        sent = 0
        with closing(connect(served)) as sock:
            sock.sendall(b"GET /v1/revenue HTTP/1.1\r\nHost: ledger\r\nX-Flood: ")
            chunk = b"a" * MIB
            try:
                while sent < 64 * MIB:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed: it reads no further
            status, headers, body = read_answer(sock)
        grown = rss(served) - before
        assert status == 431, (status, body)
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "too_large"
        assert "8192" in json.loads(body)["error"]["message"]
        assert sent < 64 * MIB, "the server read the whole flood"
        assert grown < 16 * MIB, f"the server grew by {grown} bytes"
        healthz_answers(served)
        # a request within the bound is served as before
        with served.client() as client:
            assert client.get("/v1/revenue", headers={"X-Small": "a" * 4000}).status_code == 200
        assert "Traceback" not in served.log()


def test_many_header_floods_at_once_leave_memory_bounded(settings: Settings) -> None:
    """Twenty floods at once, each pushing 4 MiB: every one is cut off at the bound."""
    with serve(settings, LEDGER_HTTP_MAX_HEADER_BYTES="16384") as served:
        healthz_answers(served)
        before = rss(served)
        socks = [connect(served) for _ in range(20)]
        try:
            for sock in socks:
                sock.sendall(b"POST /v1/commands HTTP/1.1\r\nHost: ledger\r\nX-Flood: ")
            for _ in range(4):
                for sock in socks:
                    with suppress(BrokenPipeError, ConnectionResetError):
                        sock.sendall(b"b" * MIB)
            statuses = [read_answer(sock)[0] for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert statuses == [431] * 20
        assert rss(served) - before < 16 * MIB
        healthz_answers(served)


def test_slow_header_sections_are_answered_408_within_the_header_time_limit(
    settings: Settings,
) -> None:
    """Finding 2: slow-loris connections, a byte every tenth of a second, are cut off at
    LEDGER_HTTP_HEADER_TIMEOUT from their connection, with a JSON 408."""
    with serve(settings, LEDGER_HTTP_HEADER_TIMEOUT="2") as served:
        socks = [connect(served) for _ in range(10)]
        started = time.monotonic()
        try:
            for sock in socks:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n")
            cut = set()
            while len(cut) < len(socks) and time.monotonic() - started < 20:
                for index, sock in enumerate(socks):
                    if index in cut:
                        continue
                    try:
                        sock.sendall(b"X")
                    except (BrokenPipeError, ConnectionResetError):
                        cut.add(index)
                time.sleep(0.1)
            answers = [read_answer(sock, within=10) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        elapsed = time.monotonic() - started
        assert len(cut) == len(socks)
        assert elapsed < 2 + 8, elapsed
        for status, headers, body in answers:
            assert status == 408
            assert headers["content-type"] == "application/json"
            assert json.loads(body)["error"]["code"] == "timeout"
        healthz_answers(served)


def test_a_connection_that_sends_nothing_and_an_idle_one_are_closed(settings: Settings) -> None:
    """A new connection must send its first request within the header time limit; a
    keep-alive connection idle for LEDGER_HTTP_KEEP_ALIVE_TIMEOUT is closed."""
    with serve(
        settings, LEDGER_HTTP_HEADER_TIMEOUT="2", LEDGER_HTTP_KEEP_ALIVE_TIMEOUT="1"
    ) as served:
        # both at once: the idle one's second of keep-alive runs within the silent one's two
        with closing(connect(served)) as silent, closing(connect(served)) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n")
            answer = closed_within(idle, 10)
            assert closed_within(silent, 10) == b""
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b'{"status":"ok"}')


def test_beyond_the_connections_served_answers_stay_json_and_healthz_answers(
    settings: Settings,
) -> None:
    """Finding 2: before, connections beyond the limit got uvicorn's plain-text 503
    without Retry-After, /healthz included, so the liveness probe failed."""
    with serve(
        settings, LEDGER_HTTP_MAX_CONNECTIONS="8", LEDGER_HTTP_HEADER_TIMEOUT="60"
    ) as served:
        holders = [connect(served) for _ in range(12)]
        try:
            for sock in holders:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n")  # never ends
            deadline = time.monotonic() + 20
            with served.client() as client:
                while True:
                    answer = client.get("/v1/revenue")
                    if answer.status_code == 503 or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            assert answer.status_code == 503
            assert answer.headers["content-type"] == "application/json"
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["error"]["code"] == "overloaded"
            assert "LEDGER_HTTP_MAX_CONNECTIONS" in answer.json()["error"]["message"]
            healthz_answers(served)
            with served.client(None) as probe:
                assert probe.get("/readyz").json()["ready"] is True
        finally:
            for sock in holders:
                sock.close()
        # once they are gone, requests are served again
        deadline = time.monotonic() + 20
        with served.client() as client:
            while client.get("/v1/revenue").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)


@contextmanager
def stalled_upload(served: Served, path: str = "/v1/commands") -> Iterator[socket.socket]:
    """A request whose body stops after 10 of its 200 declared bytes."""
    sock = connect(served)
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
            '{"type": "'.encode()
        )
        yield sock
    finally:
        sock.close()


def test_a_body_that_does_not_arrive_in_time_is_answered_408_and_records_nothing(
    settings: Settings,
) -> None:
    with serve(
        settings, LEDGER_HTTP_BODY_TIMEOUT="2", LEDGER_STRIPE_WEBHOOK_SECRETS="whsec_test"
    ) as served:
        # the three uploads stall at once (each waits out the same 2 s, not one after another)
        paths = ("/v1/commands", "/v1/commands/batch", "/v1/webhooks/stripe")
        started = time.monotonic()
        with ExitStack() as stack:
            socks = [stack.enter_context(stalled_upload(served, path)) for path in paths]
            answers = [read_answer(sock, within=20) for sock in socks]
        assert time.monotonic() - started < 2 + 8
        for path, (status, headers, body) in zip(paths, answers, strict=True):
            assert status == 408, (path, status, body)
            assert headers["content-type"] == "application/json"
            assert json.loads(body)["error"]["code"] == "timeout"
            assert headers["x-request-id"]
        with served.client() as client:
            assert client.get("/v1/events").json()["events"] == []
            assert client.post("/v1/commands", json=user("alice")).status_code == 201
        assert "Traceback" not in served.log()


def test_sigterm_waits_for_a_stalled_upload_no_longer_than_the_body_time_limit(
    settings: Settings,
) -> None:
    """Finding 8: before, a stalled upload held SIGTERM for the full 30 s grace, then got
    a plain-text 500 and left a CancelledError traceback in the log."""
    with serve(settings, LEDGER_HTTP_BODY_TIMEOUT="3") as served:
        with stalled_upload(served) as sock:
            wait_in_flight(served)  # the server has the request's header section
            started = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            status, headers, body = read_answer(sock, within=30)
            exit_status = served.process.wait(30)
        elapsed = time.monotonic() - started
        assert status == 408, body
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "timeout"
        assert exit_status == 0
        assert elapsed < 3 + 7, elapsed
        assert "Traceback" not in served.log()
        assert "CancelledError" not in served.log()
