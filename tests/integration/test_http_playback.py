"""The playback store in ``ledger serve``: heartbeats off the log, their stream, the metrics.
On both layouts (issue 28): a page's ``next_after`` is the store's own form of a reader's
place, a position on one server, a cursor of every organization on the distributed store,
and the next page is asked for with it as given."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from ledger.config import Settings
from ledger.playback import stream
from ledger.reading.cursor import Cursor
from tests.serving import serve
from tests.support import answers, catalogue, cli, grant, play, t

Conn = psycopg.Connection[Any]


def test_heartbeats_over_http_their_stream_and_metrics(
    settings: Settings, cli_env: dict[str, str], conn: Conn
) -> None:
    with serve(settings) as served, served.client() as client:
        setup = client.post("/v1/commands/batch", json=[*catalogue(), grant("alice")])
        assert {a["status"] for a in setup.json()} == {"accepted"}
        log_size = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
        for minute in range(5):
            answer = client.post("/v1/commands", json=play("alice", minute, at=t(5, 12, minute)))
            assert answer.status_code == 201, answer.text
        # nothing of the heartbeats in the money log
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone() == log_size
        everything = client.get("/v1/playback/events", params={"limit": 1000}).json()
        assert everything["heartbeats"] == answers(cli(cli_env, "playback", "events").stdout)
        assert len(everything["heartbeats"]) == 5
        first = client.get("/v1/playback/events", params={"limit": 2}).json()
        assert first["heartbeats"] == everything["heartbeats"][:2]
        assert first["next_after"] == _place(settings, conn, first["heartbeats"][-1])
        page = client.get("/v1/playback/events", params={"after": first["next_after"]}).json()
        assert [h["position_seconds"] for h in page["heartbeats"]] == [2, 3, 4]
        assert page["next_after"] == everything["next_after"]
        assert page["next_after"] == _place(settings, conn, everything["heartbeats"][-1])
        bad = client.get("/v1/playback/events", params={"limit": 0})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"
        metrics = client.get("/metrics").text
        assert 'ledger_playback{measure="heartbeats"} 5.0' in metrics
        assert 'ledger_playback{measure="partitions"} 1.0' in metrics
        document = client.get("/openapi.json").json()
        assert "/v1/playback/events" in document["paths"]


def _place(settings: Settings, conn: Conn, last: dict[str, Any]) -> int | str:
    """Where a reader resumes after ``last`` (the only organization's heartbeat here): its
    position on one server, the cursor's text on the distributed store."""
    if stream.per_organization(conn, settings.schema):
        return str(Cursor({UUID(last["organization_id"]): last["position"]}))
    return int(last["position"])
