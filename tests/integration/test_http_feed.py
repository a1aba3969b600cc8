"""The service's single commands under the real server: the event loop queues them and one
thread hands them to group commit together (``ledger.http.feed``), through the plain ASGI
handler in front of FastAPI (``CommandEndpoint``). Whatever the concurrency, each command
is answered as ``ledger.append`` answers it alone, in the order the log recorded."""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

import ledger
from ledger import api
from ledger.commands.parsing import parse_command
from ledger.config import Settings
from ledger.database.connections import connect
from tests.serving import TOKEN, serve
from tests.support import append as append_lines
from tests.support import (
    catalogue,
    complete,
    dump_all,
    event_count,
    grant,
    log_of,
    play,
    refund,
    t,
    user,
)

Conn = psycopg.Connection[Any]
CLIENTS = 64
VIEWERS = 4
SHARED = ("alice", "bob")


def setup() -> list[dict[str, Any]]:
    """The catalogue, a customer per client, and viewers with access to the video."""
    viewers = [f"v{n}" for n in range(VIEWERS)]
    return [
        *catalogue(),
        *(user(f"c{n}") for n in range(CLIENTS)),
        *(user(v) for v in viewers),
        *(grant(v, at=t(1, 11)) for v in viewers),
    ]


def deliveries() -> dict[str, dict[str, Any]]:
    """Each command by its idempotency key: a purchase per client for a customer of its
    own, purchases shared by two customers, heartbeats shared by a few viewers."""
    commands: dict[str, dict[str, Any]] = {}
    for n in range(CLIENTS):
        commands[f"own-{n}"] = complete(f"pi_own_{n}", customer=f"c{n}", at=t(2, 1, n % 60))
    for n in range(CLIENTS // 2):
        commands[f"shared-{n}"] = complete(f"pi_shared_{n}", customer=SHARED[n % 2])
    for n in range(CLIENTS):
        at = t(4, 1 + n // 60, n % 60)
        commands[f"beat-{n}"] = play(f"v{n % VIEWERS}", n, duration=100, at=at)
    return commands


async def client_sends(
    url: str, mine: list[tuple[str, dict[str, Any]]], seen: dict[str, list[httpx.Response]]
) -> None:
    """One client on a connection of its own, its deliveries one after the other."""
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    ) as client:
        for key, command in mine:
            answer = await client.post(
                "/v1/commands", content=json.dumps(command), headers={"Idempotency-Key": key}
            )
            seen[key].append(answer)


async def all_clients(url: str, sends: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    seen: dict[str, list[httpx.Response]] = defaultdict(list)
    shares = [sends[n::CLIENTS] for n in range(CLIENTS)]
    await asyncio.gather(*(client_sends(url, mine, seen) for mine in shares))
    return seen


def test_concurrent_single_commands_answer_and_write_as_a_sequential_replay(
    settings: Settings, conn: Conn, fresh: Callable[[], Settings]
) -> None:
    """64 clients at once, each command delivered twice with its Idempotency-Key (by two
    clients, in any order): each key is accepted once (201) and answered duplicate once
    (200); appending the accepted commands one by one, in the order of the positions the
    service answered, gives the same positions, the same rows and the same log."""
    commands = deliveries()
    sends = [*commands.items()] * 2
    random.Random(64).shuffle(sends)
    with serve(settings) as served, served.client() as client:
        answers = client.post("/v1/commands/batch", json=setup()).json()
        assert {a["status"] for a in answers} == {"accepted"}
        seen = asyncio.run(all_clients(served.url, sends))
    assert set(seen) == set(commands)
    positions: dict[str, int] = {}
    for key, responses in seen.items():
        assert sorted(r.status_code for r in responses) == [200, 201], (key, responses)
        for response in responses:
            body = response.json()
            if response.status_code == 201:
                assert body["status"] == "accepted"
                positions[key] = body["position"]
            else:
                assert body == {"status": "duplicate"}
    assert len(set(positions.values())) == len(commands)  # one position each
    replayed_at = fresh()
    with (
        api.open_ledger(replayed_at) as replay,
        connect(replayed_at, autocommit=True) as replay_conn,
    ):
        append_lines(replay, *setup())
        for key in sorted(positions, key=positions.__getitem__):
            cmd = parse_command(json.dumps(commands[key] | {"idempotency_key": key}))
            result = ledger.append(replay, cmd)
            assert (result.status, result.position) == ("accepted", positions[key]), key
        assert dump_all(replay_conn) == dump_all(conn)
        assert log_of(replay_conn) == log_of(conn)


def waiting_for_the_log(conn: Conn) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = 'ledger_events'::regclass AND NOT granted"
    ).fetchone()
    return int(row[0]) if row else 0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    done = threading.Event()
    for _ in range(3000):
        if condition():
            return
        done.wait(0.02)
    raise AssertionError(f"never: {what}")


@contextmanager
def log_locked(settings: Settings) -> Iterator[None]:
    """The log's lock held by another connection until the block ends, so that the
    service's group waits at its append: what is in flight is then certain."""
    with connect(settings) as holder:
        holder.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
        yield
        holder.commit()


def send_and_hang_up(url: str, command: dict[str, Any], key: str) -> socket.socket:
    """A POST sent whole on a raw connection whose answer nobody will read."""
    where = urlsplit(url)
    body = json.dumps(command).encode()
    raw = socket.create_connection((where.hostname, where.port or 80))
    raw.sendall(
        b"POST /v1/commands HTTP/1.1\r\n"
        + f"Host: {where.netloc}\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
        + f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return raw


def test_a_command_whose_client_hung_up_is_still_committed_once(
    settings: Settings, conn: Conn
) -> None:
    """The client goes away while its command's group waits for the log: the command was
    handed over for appending, so it is committed (once: a redelivery is a duplicate),
    and the service goes on answering the others, those queued behind it included."""
    with (
        serve(settings, LEDGER_LOCK_TIMEOUT="300s") as served,
        served.client() as client,
    ):
        assert {
            a["status"] for a in client.post("/v1/commands/batch", json=catalogue()).json()
        } == {"accepted"}
        before = event_count(conn)
        behind: list[httpx.Response] = []
        with log_locked(settings):
            raw = send_and_hang_up(served.url, complete("pi_gone"), "gone")
            wait_for(lambda: waiting_for_the_log(conn) == 1, "the group at the log")
            raw.close()

            def send_behind() -> None:
                with served.client() as other:
                    behind.append(other.post("/v1/commands", json=complete("pi_next", "bob")))

            sender = threading.Thread(target=send_behind)
            sender.start()
            # the loop goes on answering while the group waits: probes and reads
            assert client.get("/healthz").status_code == 200
            events = client.get("/v1/events", params={"topic": "PurchaseCompleted"})
            assert (events.status_code, events.json()["events"]) == (200, [])
        sender.join(timeout=120)
        assert not sender.is_alive()
        assert [r.status_code for r in behind] == [201]
        again = client.post(
            "/v1/commands", json=complete("pi_gone"), headers={"Idempotency-Key": "gone"}
        )
        assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
        assert client.post("/v1/commands", json=user("after")).status_code == 201
        assert "Traceback" not in served.log()
    rows = conn.execute(
        "SELECT stripe_payment_intent_id FROM purchases ORDER BY stripe_payment_intent_id"
    ).fetchall()
    assert rows == [("pi_gone",), ("pi_next",)]
    topics = conn.execute(
        "SELECT topic, count(*) FROM ledger_events WHERE notification_id > %s GROUP BY topic",
        (before,),
    ).fetchall()
    assert dict(topics)["PurchaseCompleted"] == 2
    assert dict(topics)["UserRegistered"] == 1


# --- metrics ---------------------------------------------------------------------------


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, name
    return float(found.group(1))


def test_metrics_count_the_fast_paths_commands_and_every_group_commit(
    settings: Settings, conn: Conn
) -> None:
    """Each single command that parsed is in exactly one group commit, so the group sizes
    add up to them (a batch is not group-committed, a body that did not parse never
    reaches the ledger); every answer is counted by type and status."""
    with serve(settings) as served, served.client() as client:
        client.post("/v1/commands/batch", json=catalogue())
        singles = [
            (complete("pi_1"), 201),
            (complete("pi_1"), 200),
            (complete("pi_1", amount=2999, fees=(299, 800)), 409),
            (refund("pi_1", "re_1", 5000), 409),
            (user("x"), 201),
        ]
        for command, status in singles:
            assert client.post("/v1/commands", json=command).status_code == status
        assert client.post("/v1/commands", json=complete("pi_2", amount=0)).status_code == 422
        assert client.post("/v1/commands", content=b"{oops").status_code == 422
        with served.client(None) as probe:
            sequential = probe.get("/metrics").text

            async def burst() -> list[int]:
                async with served.async_client() as many:
                    answers = await asyncio.gather(
                        *(many.post("/v1/commands", json=user(f"b{n}")) for n in range(16))
                    )
                return [a.status_code for a in answers]

            assert asyncio.run(burst()) == [201] * 16
            text = probe.get("/metrics").text
    # one at a time: one group each, of one command
    assert metric(sequential, "ledger_group_commit_size_count") == len(singles)
    assert metric(sequential, "ledger_group_commit_size_sum") == len(singles)
    assert metric(sequential, 'ledger_group_commit_size_bucket{le="1.0"}') == len(singles)
    # concurrent ones: however they were grouped, each is in exactly one group
    groups = metric(text, "ledger_group_commit_size_count")
    assert metric(text, "ledger_group_commit_size_sum") == len(singles) + 16
    assert len(singles) < groups <= len(singles) + 16
    assert metric(text, "ledger_group_commit_seconds_count") == groups
    expected = {
        ("purchase.complete", "accepted"): 1,
        ("purchase.complete", "duplicate"): 1,
        ("purchase.complete", "conflict"): 1,
        ("purchase.complete", "validation_error"): 1,
        ("purchase.refund", "invalid_state"): 1,
        ("user.register", "accepted"): 3 + 1 + 16,
        ("unknown", "validation_error"): 1,
    }
    for (kind, outcome), count in expected.items():
        name = f'ledger_commands_total{{status="{outcome}",type="{kind}"}}'
        assert metric(text, name) == count, name
    assert metric(text, 'ledger_append_seconds_count{kind="command"}') == len(singles) + 16
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (3 + 1 + 16,)
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)
