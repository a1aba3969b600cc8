"""On the distributed log, a content's deletion touches its organization's worker alone (i28o).

``content.delete`` read ``purchases`` by content (the RESTRICT rule) and deleted the
content's rows (``content``, ``content_access``, ``video_playback``) by content id: on Citus
each of those statements went to every shard of its table, so a stopped worker failed the
deletion of every organization's content. Both now name the content's organization too
(every purchase and every row of a content carries it), so a deletion of an organization on
a running worker is answered as on one server while the other worker is stopped, the
RESTRICT rule included. The single server and the memory store answer the same
(``test_contract_rules.py::test_content_with_purchases_cannot_be_deleted``,
``test_memory_parity.py``). And since i28p neither a deletion nor an organization's
registration reads the platform's chain (``facts.APART``): with the *platform's* worker
stopped, both go on for the organizations of the other worker.
"""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.log.chains import PLATFORM
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.stopped_workers import beside_the_platform, home_ids, messages, videos, worker_of
from tests.support import append, complete, grant, org, publish, statuses, t, user

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


def _delete(content_id: str, day: int = 5) -> dict[str, Any]:
    return {"type": "content.delete", "content_id": content_id, "occurred_at": t(day)}


def _assert_restricted(refused: list[Any], content_id: str) -> None:
    """A deletion refused by the RESTRICT rule, as one server refuses it."""
    assert statuses(refused) == ["rejected:invalid_state"]
    assert refused[0].error is not None
    assert refused[0].error.message == (
        f"content {content_id} has purchases; purchases restrict its deletion"
    )


def test_with_the_other_worker_stopped_a_content_is_deleted_as_on_one_server(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """Organization B's rows, its contents' claims and the platform's chain on one worker;
    organization A on the other, which is stopped: B deletes a content without purchases
    (its grant's row goes with it), is refused one with purchases (``has purchases``), and
    answers ``duplicate`` for the one deleted, as one server does; A's content and rows are
    untouched, and A's deletion goes through once its worker is back. Before (the read and
    the deletions by content id alone, on every shard), B's deletion failed with the error
    naming the stopped worker."""
    schema = distributed.schema
    log = f"{schema}.ledger_events"
    _, b, a = beside_the_platform(citus, conn, log)
    stopped = worker_of(citus, conn, log, a)
    bought, intents = home_ids(citus, conn, schema, b)
    free = next(v for v in videos(citus, conn, schema, b, 2) if v != bought)
    video_a = videos(citus, conn, schema, a, 1)[0]
    conn.commit()
    with api.open_ledger(distributed) as ledger:
        setup = [org(str(a), "A"), org(str(b), "B"), user("creator"), user("alice"), user("bob")]
        setup += [publish(video_a, str(a)), publish(bought, str(b)), publish(free, str(b))]
        setup += [complete(intents[0], content_id=bought), grant("alice", free)]
        setup += [complete(f"pi_a_{str(a)[:8]}", content_id=video_a), grant("bob", video_a)]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 12
        with citus.stopped(stopped):
            deleted = append(ledger, _delete(free))
            assert statuses(deleted) == ["accepted"], [r.error for r in deleted]
            _assert_restricted(append(ledger, _delete(bought)), bought)
            assert statuses(append(ledger, _delete(free, 6))) == ["duplicate"]
            with pytest.raises(Exception) as caught:  # A's own: its worker is the stopped one
                append(ledger, _delete(video_a))
            assert "remote node" in messages(caught.value), messages(caught.value)
        conn.commit()
        content = conn.execute("SELECT id::text FROM content").fetchall()
        assert sorted(content) == sorted([(bought,), (video_a,)])
        access = conn.execute("SELECT content_id::text, user_id FROM content_access").fetchall()
        expected = [(bought, "alice"), (video_a, "alice"), (video_a, "bob")]
        assert sorted(access) == sorted(expected)  # free's grant deleted with it
        conn.commit()
        assert statuses(append(ledger, _delete(video_a))) == ["rejected:invalid_state"]
        assert statuses(append(ledger, _delete(bought))) == ["rejected:invalid_state"]
    rows = conn.execute(
        "SELECT organization_id, content_id::text FROM purchases ORDER BY 1"
    ).fetchall()
    assert sorted(rows) == sorted([(b, bought), (a, video_a)])
    deletions = conn.execute(
        "SELECT organization_id FROM ledger_events WHERE topic LIKE %s", ("%ContentDeleted%",)
    ).fetchall()
    assert deletions == [(b,)]  # one deletion, in B's chain


def test_with_the_platforms_worker_stopped_a_content_is_deleted_and_an_organization_registers(
    citus: CitusCluster, distributed: Settings, conn: Conn
) -> None:
    """i28p: ``content.delete`` and ``organization.register`` name no person and read nothing
    of the platform's chain (``facts.APART``), so with the *platform's* worker stopped an
    organization on the other worker deletes a content without purchases (from a process
    that has cached nothing too: its route found by the content's claim), is refused one
    with purchases, and a new organization whose shard is on the running worker registers;
    each repeat is ``duplicate``, as on one server. An organization of the stopped worker
    fails naming the remote node. Before (their route kept the platform's chain), B's
    deletion and C's registration failed naming the stopped worker."""
    schema = distributed.schema
    log = f"{schema}.ledger_events"
    platform = worker_of(citus, conn, log, PLATFORM)
    candidates = list(itertools.islice(citus_support.organizations(), 64))
    b, c = [o for o in candidates if worker_of(citus, conn, log, o) != platform][:2]
    a = next(o for o in candidates if worker_of(citus, conn, log, o) == platform)
    assert worker_of(citus, conn, f"{schema}.organizations", c) != platform  # colocated
    bought, intents = home_ids(citus, conn, schema, b)
    free, kept, never = [v for v in videos(citus, conn, schema, b, 4) if v != bought][:3]
    conn.commit()
    with api.open_ledger(distributed) as ledger, api.open_ledger(distributed) as cold:
        setup = [org(str(a), "A"), org(str(b), "B"), user("creator"), user("alice")]
        setup += [publish(bought, str(b)), publish(free, str(b)), publish(kept, str(b))]
        setup += [complete(intents[0], content_id=bought), grant("alice", free)]
        assert statuses(append(ledger, *setup)) == ["accepted"] * 9
        assert cold.recorder.is_distributed()  # type: ignore[attr-defined]
        with citus.stopped(platform):
            deleted = append(cold, _delete(free))  # no aggregate cached: found by its claim
            assert statuses(deleted) == ["accepted"], [r.error for r in deleted]
            assert statuses(append(ledger, _delete(kept))) == ["accepted"]
            _assert_restricted(append(ledger, _delete(bought)), bought)
            assert statuses(append(ledger, _delete(free, 6))) == ["duplicate"]
            assert statuses(append(cold, _delete(kept, 6))) == ["duplicate"]
            assert statuses(append(cold, _delete(never))) == ["rejected:not_found"]  # no claim
            assert statuses(append(ledger, org(str(c), "C"))) == ["accepted"]
            assert statuses(append(cold, org(str(c), "C"))) == ["duplicate"]
            with pytest.raises(Exception) as caught:  # A's chain is on the stopped worker
                append(ledger, org(str(a), "A"))
            assert "remote node" in messages(caught.value), messages(caught.value)
        conn.commit()
        assert conn.execute("SELECT id::text FROM content").fetchall() == [(bought,)]
        assert conn.execute("SELECT count(*) FROM content_access").fetchone() == (1,)
        names = conn.execute("SELECT id, name FROM organizations ORDER BY name").fetchall()
        assert names == [(a, "A"), (b, "B"), (c, "C")]
        conn.commit()
        assert statuses(append(ledger, org(str(a), "A"))) == ["duplicate"]
    deletions = conn.execute(
        "SELECT organization_id FROM ledger_events WHERE topic LIKE %s", ("%ContentDeleted%",)
    ).fetchall()
    assert deletions == [(b,), (b,)]  # in B's chain, none in the platform's
    assert conn.execute(
        "SELECT count(*) FROM ledger_events WHERE organization_id = %s", (PLATFORM,)
    ).fetchone() == (2,)  # creator and alice registered, nothing since
