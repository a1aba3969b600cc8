"""On the distributed log, a command's answers about its people are taken as facts on its
organization's worker, and they answer as on one server: grants, publications and purchases
about a customer not registered, deleted or erased, and a deletion committed by another writer
between the fact and the append leaves no row (the facts' part of ``test_log_one_worker.py``,
docs/scaling.md).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.service import Ledger
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.stopped_workers import home_ids, videos
from tests.support import append, complete, grant, org, publish, start, statuses, t, user

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


def test_grants_and_publications_answer_about_their_people_as_on_one_server(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """The answers a grant and a publication give about the person they name are those of a
    single server on facts of ``users``: not registered, deleted, erased (its subject gone),
    each naming its field; a revocation (on the ``User`` aggregate) the same."""
    schema = distributed.schema
    b = next(iter(citus_support.organizations()))
    video, *fresh = videos(citus, conn, schema, b, 4)
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(str(b), "B"), user("creator"), user("dave"), user("erin")]
        setup += [publish(video, str(b)), grant("dave", video)]
        gone = [{"type": "user.delete", "user_id": "dave", "occurred_at": t(1, 11)}]
        gone += [{"type": "user.erase", "user_id": "erin", "occurred_at": t(1, 11)}]
        assert statuses(append(ledger, *setup, *gone)) == ["accepted"] * 8
        revoke = {"type": "access.revoke", "user_id": "dave", "content_id": video}
        answers = append(
            ledger,
            grant("nobody", video),
            grant("dave", video),
            grant("erin", video),
            publish(fresh[0], str(b), creator="nobody"),
            publish(fresh[1], str(b), creator="dave"),
            publish(fresh[2], str(b), creator="erin"),
            revoke | {"occurred_at": t(3)},
        )
    assert [(a.status, a.error and (a.error.field, a.error.message)) for a in answers] == [
        ("rejected", ("user_id", "user 'nobody' is not registered")),
        ("rejected", ("user_id", "user 'dave' was deleted")),
        ("rejected", ("user_id", "user 'erin' is not registered")),
        ("rejected", ("creator_id", "user 'nobody' is not registered")),
        ("rejected", ("creator_id", "user 'dave' was deleted")),
        ("rejected", ("creator_id", "user 'erin' is not registered")),
        ("rejected", ("user_id", "user 'dave' was deleted")),
    ]


def test_a_purchase_answers_about_its_customer_as_on_one_server(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """The answers a purchase gives about its customer are those of a single server, now
    that the distributed log decides on facts of ``users``: not registered, deleted, erased
    (its subject gone), a customer of a started purchase deleted before its failure."""
    schema = distributed.schema
    b = next(iter(citus_support.organizations()))
    video, intents = home_ids(citus, conn, schema, b)
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(str(b), "B"), user("creator"), user("dave"), user("erin"), user("fay")]
        setup += [publish(video, str(b)), start(intents[0], customer="fay", content_id=video)]
        gone = [{"type": "user.delete", "user_id": "dave", "occurred_at": t(1, 11)}]
        gone += [{"type": "user.erase", "user_id": "erin", "occurred_at": t(1, 11)}]
        gone += [{"type": "user.delete", "user_id": "fay", "occurred_at": t(2, 12)}]
        assert statuses(append(ledger, *setup, *gone)) == ["accepted"] * 10
        answers = append(
            ledger,
            complete("pi_n", customer="nobody", content_id=video),
            complete("pi_d", customer="dave", content_id=video),
            start("pi_e", customer="erin", content_id=video),
            {"type": "purchase.fail", "stripe_payment_intent_id": intents[0], "occurred_at": t(3)},
        )
    assert [(a.status, a.error and a.error.message) for a in answers] == [
        ("rejected", "user 'nobody' is not registered"),
        ("rejected", "user 'dave' was deleted"),
        ("rejected", "user 'erin' is not registered"),
        ("rejected", "the purchase's customer was deleted"),
    ]


def test_a_deletion_committed_between_the_fact_and_the_append_leaves_no_purchase(
    citus: CitusCluster, distributed: Settings, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the ``User`` aggregate's version check ordered before: a purchase decided on
    the fact that its customer is registered, and the customer's deletion committed (by
    another writer) before the purchase's append. The purchase's row references ``users``,
    whose copy on the worker the deletion removed: its foreign key refuses the append, the
    purchase is decided again, finds the person gone and answers as one server would. No
    purchase row of the deleted person, no purchase event in the log."""
    schema = distributed.schema
    b = next(iter(citus_support.organizations()))
    video, intents = home_ids(citus, conn, schema, b)
    conn.commit()
    with api.open_ledger(distributed) as ledger, api.open_ledger(distributed) as other:
        setup = [org(str(b), "B"), user("creator"), user("carol"), publish(video, str(b))]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 4
        asked = _carol_deleted_after_the_facts(monkeypatch, ledger, other)
        answer = append(ledger, complete(intents[0], customer="carol", content_id=video))
    assert asked[0] is True and False in asked[1:]  # decided on "live", then again on "gone"
    assert [(a.status, a.error and a.error.message) for a in answer] == [
        ("rejected", "user 'carol' was deleted")
    ]
    assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (0,)
    events = conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", ("%Purchase%",)
    ).fetchone()
    assert events == (0,)


@pytest.mark.parametrize("command", ["new grant", "grant again", "publication", "revocation"])
def test_a_deletion_between_the_fact_and_a_grant_or_publication_leaves_no_row(
    citus: CitusCluster,
    distributed: Settings,
    conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """The race of the purchase's test above, for a grant (of a content the person had no
    access to: its row inserted; of one they had: the upsert of a row the deletion's cascade
    removed), a publication (its ``content`` row's ``creator_id``) and a revocation (of her
    access, its row upserted before its deletion: the deletion's cascade removed it, so the
    upsert inserts it and its key is checked): decided on the fact that carol is registered,
    her deletion committed by another writer before the append. The row's foreign key
    refuses the append, the command is decided again and answers as one server would (a
    revocation too: ``was deleted``, not accepted): no row of carol's, no event of the
    command in the log."""
    schema = distributed.schema
    b = next(iter(citus_support.organizations()))
    video, other_video = videos(citus, conn, schema, b, 2)
    conn.commit()
    with api.open_ledger(distributed) as ledger, api.open_ledger(distributed) as other:
        setup = [org(str(b), "B"), user("creator"), user("carol"), publish(video, str(b))]
        setup += [grant("carol", video, at=t(1, 11))]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 5
        asked = _carol_deleted_after_the_facts(monkeypatch, ledger, other)
        attempt, field, topic = {
            "new grant": (grant("carol", other_video), "user_id", "%AccessGranted%"),
            "grant again": (grant("carol", video, "preview"), "user_id", "%AccessGranted%"),
            "publication": (
                publish(other_video, str(b), creator="carol"),
                "creator_id",
                "%ContentPublished%",
            ),
            "revocation": (
                {
                    "type": "access.revoke",
                    "user_id": "carol",
                    "content_id": video,
                    "occurred_at": t(3),
                },
                "user_id",
                "%AccessRevoked%",
            ),
        }[command]
        if command == "new grant":
            assert statuses(append(ledger, publish(other_video, str(b)))) == ["accepted"]
        before = conn.execute(
            "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", (topic,)
        ).fetchone()
        conn.commit()
        answer = append(ledger, attempt)
    assert asked[0] is True and False in asked[1:]  # decided on "live", then again on "gone"
    assert [(a.status, a.error and (a.error.field, a.error.message)) for a in answer] == [
        ("rejected", (field, "user 'carol' was deleted"))
    ]
    assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM users WHERE id = 'carol'").fetchone() == (0,)
    published = conn.execute("SELECT id::text, creator_id FROM content").fetchall()
    creators = [(video, "creator")] + [(other_video, "creator")] * (command == "new grant")
    assert sorted(published) == sorted(creators)  # a publication of carol's: none
    events = conn.execute(
        "SELECT count(*) FROM ledger_events WHERE topic LIKE %s", (topic,)
    ).fetchone()
    assert events == before


def _carol_deleted_after_the_facts(
    monkeypatch: pytest.MonkeyPatch, ledger: Ledger, other: Ledger
) -> list[bool]:
    """``ledger``'s facts read as they are, then (once) carol's deletion committed by
    ``other``; the list it returns says, for each read, whether everyone was live."""
    read = ledger.recorder.people_of  # type: ignore[attr-defined]
    asked: list[bool] = []

    def then_deleted(values: Any) -> Any:
        found = read(values)
        if not asked:
            deleted = {"type": "user.delete", "user_id": "carol", "occurred_at": t(1, 12)}
            assert statuses(append(other, deleted)) == ["accepted"]
        asked.append(all(p.live for p in found.values()))
        return found

    monkeypatch.setattr(ledger.recorder, "people_of", then_deleted)
    return asked
