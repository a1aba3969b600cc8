"""``ledger users export USER_ID`` and ``GET /v1/users/{user_id}/export`` (issue 27,
docs/privacy.md): everything the ledger holds about one person, each event with its
position; erased or unknown: ``not_found``."""

from __future__ import annotations

import json
from typing import Any

from ledger.config import Settings
from ledger.service import Ledger
from tests.serving import serve
from tests.support import append, catalogue, cli, complete, play, refund, statuses, t

FULL = "full-token"
WRITER = "writer-token"


def history() -> list[dict[str, Any]]:
    return [*catalogue(), complete("pi_a"), refund("pi_a", "re_a", 499), play("alice", 30)]


def test_the_export_holds_the_person_and_their_positions(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    assert "rejected" not in " ".join(statuses(append(ledger_app, *history())))
    done = cli(cli_env, "users", "export", "alice")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["user_id"] == "alice" and document["registered"]["id"] == "alice"
    [purchase] = document["purchases"]
    assert (purchase["stripe_payment_intent_id"], purchase["amount_paid_cents"]) == ("pi_a", 1999)
    assert purchase["refunded_amount_cents"] == 499 and purchase["status"] == "completed"
    assert [row["user_id"] for row in document["access"]] == ["alice"]
    assert [row["position_seconds"] for row in document["playback"]] == [30]
    topics = [e["topic"] for e in document["events"]]
    for topic in ("UserRegistered", "PurchaseCompleted", "PurchaseRefunded"):
        assert topic in topics
    # the heartbeat is the playback store's (not the log's): by its position in that stream
    [heartbeat] = document["heartbeats"]
    assert heartbeat["position_seconds"] == 30 and heartbeat["position"] > 0
    assert heartbeat["occurred_at"].startswith(t(4)[:10]) and document["heartbeats_compacted"] == []
    positions = [e["position"] for e in document["events"]]
    assert positions == sorted(positions) and all(p > 0 for p in positions)
    # the events are shown with the person's id, never their subject; bob is not in it
    assert "subject:" not in done.stdout and '"bob"' not in done.stdout


def test_an_erased_or_unknown_person_is_not_found(
    ledger_app: Ledger, cli_env: dict[str, str]
) -> None:
    append(ledger_app, *history())
    unknown = cli(cli_env, "users", "export", "nobody")
    assert unknown.returncode == 1 and "not_found" in unknown.stderr and not unknown.stdout
    append(ledger_app, {"type": "user.erase", "user_id": "alice", "occurred_at": t(9)})
    erased = cli(cli_env, "users", "export", "alice")
    assert erased.returncode == 1 and "not_found" in erased.stderr
    # bob's export names nothing of alice's
    bob = cli(cli_env, "users", "export", "bob")
    assert bob.returncode == 0 and "alice" not in bob.stdout


def test_over_http_export_and_erasure_need_the_users_scope(settings: Settings) -> None:
    tokens = f"{FULL},{WRITER}:commands+read"
    with serve(settings, LEDGER_API_TOKENS=tokens) as served:  # noqa: SIM117
        with served.client(FULL) as full, served.client(WRITER) as writer:
            assert full.post("/v1/commands/batch", json=history()).status_code == 200
            answer = full.get("/v1/users/alice/export")
            assert answer.status_code == 200, answer.text
            assert answer.json()["purchases"][0]["stripe_payment_intent_id"] == "pi_a"
            assert writer.get("/v1/users/alice/export").status_code == 403
            erase = {"type": "user.erase", "user_id": "alice", "occurred_at": t(9)}
            assert writer.post("/v1/commands", json=erase).status_code == 403
            assert writer.post("/v1/commands/batch", json=[erase]).status_code == 403
            assert full.get("/v1/users/alice/export").status_code == 200  # nothing written
            assert full.post("/v1/commands", json=erase).status_code == 201
            gone = full.get("/v1/users/alice/export")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
