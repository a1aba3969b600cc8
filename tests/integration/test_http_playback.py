"""The playback store in ``ledger serve``: heartbeats off the log, their stream, the metrics."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger.config import Settings
from tests import citus_support
from tests.serving import serve
from tests.support import answers, catalogue, cli, grant, play, t

Conn = psycopg.Connection[Any]


@pytest.mark.single_server(citus_support.STORE_POSITION)
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
        page = client.get(
            "/v1/playback/events", params={"after": everything["heartbeats"][1]["position"]}
        ).json()
        assert [h["position_seconds"] for h in page["heartbeats"]] == [2, 3, 4]
        assert page["next_after"] == everything["heartbeats"][-1]["position"]
        bad = client.get("/v1/playback/events", params={"limit": 0})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"
        metrics = client.get("/metrics").text
        assert 'ledger_playback{measure="heartbeats"} 5.0' in metrics
        assert 'ledger_playback{measure="partitions"} 1.0' in metrics
        document = client.get("/openapi.json").json()
        assert "/v1/playback/events" in document["paths"]
