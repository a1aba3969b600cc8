"""Group commit per organization (issue 28, docs/scaling.md).

On a distributed layout a group takes, behind its head, only the commands of the head's
organization, passing over other organizations' commands but never a command of the whole
platform (a user's registration). Shown on a single server with a ledger opened to group so
(the grouping is the committer's, whatever the server), and on the cluster: with one worker
stopped, the commands of its organizations fail with a retryable error, through group
commit and through HTTP, while the other organizations' commands are accepted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import islice
from typing import Any

import psycopg
import pytest

from ledger import api
from ledger.commands.results import Result
from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from ledger.domain import ids
from ledger.log.chains import PLATFORM
from ledger.service import Ledger
from tests import citus_support
from tests.citus_support import CitusCluster
from tests.integration.test_group_commit import (
    Callers,
    command,
    log_locked,
    wait_for,
    waiting_for_the_log,
)
from tests.serving import serve
from tests.support import (
    CONTENT,
    CONTENT_2,
    ORG_2,
    answers,
    append,
    catalogue,
    cli,
    complete,
    org,
    publish,
    statuses,
    user,
)

Conn = psycopg.Connection[Any]


# the first group waits at the log's lock (``log_locked``) while the test queues its
# callers one by one, each seen queued before the next starts: on a loaded machine that
# can take longer than the default lock timeout (5 s), and the first group would fail
# with ``LockTimeout``. How long a group may wait is not what these tests are about.
HELD = "300s"


@pytest.fixture
def per_organization(settings: Settings) -> Iterator[Ledger]:
    app = Ledger(replace(settings, lock_timeout=HELD), per_organization=True)
    yield app
    app.close()


def test_a_group_takes_its_organization_and_passes_over_others_but_not_the_platform(
    per_organization: Ledger, settings: Settings, conn: Conn
) -> None:
    app = per_organization
    setup = append(app, *catalogue(), org(ORG_2, "Contoso"), publish(CONTENT_2, ORG_2))
    assert set(statuses(setup)) == {"accepted"}
    sizes: list[int] = []
    api.observe_groups(app, lambda size, seconds: sizes.append(size))
    a = lambda n: command(complete(f"pi_a{n}"))  # noqa: E731
    b = lambda n: command(complete(f"pi_b{n}", customer="bob", content_id=CONTENT_2))  # noqa: E731
    queued = [a(1), b(1), a(2), b(2), command(user("carol")), a(3), b(3)]
    callers = Callers(app)
    with log_locked(settings):
        callers.start(0, command(complete("pi_a0")))
        wait_for(lambda: waiting_for_the_log(conn) == 1)  # the first group, at its append
        for n, cmd in enumerate(queued, start=1):
            callers.start(n, cmd)
            wait_for(lambda n=n: app.groups.waiting == n)  # type: ignore[misc]
    outcomes = callers.join()
    assert all(isinstance(r, Result) and r.status == "accepted" for r in outcomes.values())
    # a0 alone; a1 with a2 (b1 passed over); b1 with b2; the user's registration is never
    # passed over nor joined by another's; then a3 (b3 passed over, nothing behind it), b3
    assert sizes == [1, 2, 2, 1, 1, 1]
    position = {n: outcomes[n].position for n in outcomes}  # type: ignore[union-attr]
    order = sorted(position, key=lambda n: position[n])  # type: ignore[arg-type,return-value]
    assert order == [0, 1, 3, 2, 4, 5, 6, 7]


def test_on_a_single_server_a_group_is_the_head_of_the_queue_as_before(
    fresh: Callable[[], Settings],
) -> None:
    # a schema of the single-server layout whatever the run (``fresh`` is never distributed):
    # with LEDGER_TEST_DISTRIBUTE=1 ``settings`` is distributed, where groups are per
    # organization (the test above)
    single = fresh()
    ledger_app = api.open_ledger(replace(single, lock_timeout=HELD))
    try:
        with connect(single, autocommit=True) as conn:
            setup = append(
                ledger_app, *catalogue(), org(ORG_2, "Contoso"), publish(CONTENT_2, ORG_2)
            )
            assert set(statuses(setup)) == {"accepted"}
            sizes: list[int] = []
            api.observe_groups(ledger_app, lambda size, seconds: sizes.append(size))
            callers = Callers(ledger_app)
            with log_locked(single):
                callers.start(0, command(complete("pi_a0")))
                wait_for(lambda: waiting_for_the_log(conn) == 1)
                for n in range(1, 7):
                    content = CONTENT if n % 2 else CONTENT_2
                    callers.start(n, command(complete(f"pi_{n}", content_id=content)))
                    wait_for(lambda n=n: ledger_app.groups.waiting == n)  # type: ignore[misc]
            callers.join()
    finally:
        ledger_app.close()
    assert sizes == [1, 6]


def _two_organizations(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> tuple[str, str, citus_support.Worker, str, str]:
    """The test's schema distributed (the money tables and the log, `ledger db distribute`),
    and two organizations whose rows and events live on different workers: the one to lose
    with its worker, the one kept, and a content id of each.

    The worker lost is the one without the platform's chain (the users' registrations: what
    losing that worker does is test_log_one_worker.py's, docs/scaling.md), and
    the kept organization's content is one whose claim (``ledger_key_claims``, by the
    content's id) is on the kept worker too."""
    with psycopg.connect(settings.url) as admin:
        distribution.distribute(admin, settings.schema)
        admin.commit()
    log = f"{settings.schema}.ledger_events"
    platform = citus.placement(conn, log, PLATFORM).worker
    lost, kept = citus.on_distinct_workers(conn, log, islice(citus_support.organizations(), 64), 2)
    if citus.placement(conn, log, lost).worker == platform:
        lost, kept = kept, lost
    worker = citus.placement(conn, log, lost).worker
    lost_id, kept_id = str(lost), str(kept)
    lost_content = str(uuid.uuid5(uuid.UUID(lost_id), "content"))
    contents = (str(uuid.uuid5(uuid.UUID(kept_id), f"content-{n}")) for n in range(1000))
    kept_content = _kept(citus, conn, settings, worker, ids.content_id, contents, 1)[0]
    return lost_id, kept_id, worker, lost_content, kept_content


def _kept(
    citus: CitusCluster,
    conn: Conn,
    settings: Settings,
    lost: citus_support.Worker,
    aggregate: Callable[[str], uuid.UUID],
    names: Iterable[str],
    count: int,
) -> list[str]:
    """The first ``count`` of ``names`` whose aggregate's claim (a payment intent's, a
    content's: ``ledger_key_claims``, distributed by the aggregate's id) is not on the lost
    worker: what an organization of the kept worker names while the other is down."""
    claims = f"{settings.schema}.ledger_key_claims"
    found: list[str] = []
    for name in names:
        if citus.placement(conn, claims, aggregate(name)).worker != lost:
            found.append(name)
            if len(found) == count:
                return found
    raise LookupError("no name whose claim is on the kept worker")


@pytest.mark.citus
def test_a_stopped_worker_fails_its_organizations_groups_and_no_other(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    lost, kept, worker, lost_content, kept_content = _two_organizations(citus, settings, conn)
    with api.open_ledger(settings) as app:
        assert (
            app.groups.money._partition is not None
        )  # a distributed layout groups per organization
        setup = [org(lost, "Lost"), org(kept, "Kept"), user("creator"), user("alice")]
        setup += [publish(lost_content, lost), publish(kept_content, kept)]
        assert set(statuses(append(app, *setup))) == {"accepted"}
        with citus.stopped(worker):
            callers = Callers(app)
            kept_intents = iter(
                _kept(citus, conn, settings, worker, ids.purchase_id, pis("pi_k"), 4)
            )
            commands = [
                complete(f"pi_{n}", content_id=lost_content)
                if n % 2
                else complete(next(kept_intents), content_id=kept_content)
                for n in range(8)
            ]
            for n, fields in enumerate(commands):
                callers.start(n, command(fields))
            outcomes = callers.join()
        for n, outcome in outcomes.items():
            if n % 2:  # the lost worker's organization: a connection failure, nothing written
                assert isinstance(outcome, Exception), outcome
                assert "remote node" in str(outcome)
            else:
                assert isinstance(outcome, Result) and outcome.status == "accepted", outcome
        # once the worker is back, the lost organization's commands go through
        again = append(app, *(c for n, c in enumerate(commands) if n % 2))
        assert statuses(again) == ["accepted"] * 4
    rows = conn.execute(
        "SELECT organization_id::text, count(*) FROM purchases GROUP BY 1"
    ).fetchall()
    assert dict(rows) == {lost: 4, kept: 4}


@pytest.mark.citus
def test_over_http_a_stopped_worker_answers_503_for_its_organizations_and_201_for_others(
    citus: CitusCluster, settings: Settings, conn: Conn
) -> None:
    lost, kept, worker, lost_content, kept_content = _two_organizations(citus, settings, conn)
    setup = [org(lost, "Lost"), org(kept, "Kept"), user("creator"), user("alice")]
    setup += [publish(lost_content, lost), publish(kept_content, kept)]
    with serve(settings) as served, served.client() as client:
        for fields in setup:
            assert client.post("/v1/commands", content=json.dumps(fields)).status_code == 201
        with citus.stopped(worker):
            refused = client.post(
                "/v1/commands", content=json.dumps(complete("pi_l", content_id=lost_content))
            )
            intent = _kept(citus, conn, settings, worker, ids.purchase_id, pis("pi_k"), 1)[0]
            accepted = client.post(
                "/v1/commands", content=json.dumps(complete(intent, content_id=kept_content))
            )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        assert "Retry-After" in refused.headers
        assert accepted.status_code == 201, accepted.text
        retried = client.post(
            "/v1/commands", content=json.dumps(complete("pi_l", content_id=lost_content))
        )
        assert retried.status_code == 201, retried.text


@pytest.mark.citus
def test_ledger_append_for_a_stopped_workers_organization_exits_two_and_others_append(
    citus: CitusCluster, settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    """The CLI's side of a lost worker (docs/cli.md, "Exit statuses and errors"): `ledger
    append` of the lost worker's organization stops at its first line with exit 2, the
    database error naming the remote node and the line to send again; an append of another
    organization, at the same time, is accepted whole; once the worker is back, the same
    input sent again is accepted, nothing twice."""
    lost, kept, worker, lost_content, kept_content = _two_organizations(citus, settings, conn)
    setup = [org(lost, "Lost"), org(kept, "Kept"), user("creator"), user("alice")]
    setup += [publish(lost_content, lost), publish(kept_content, kept)]
    kept_intents = _kept(citus, conn, settings, worker, ids.purchase_id, pis("pi_k"), 3)
    intents = {"pi_l": [f"pi_l{n}" for n in range(3)], "pi_k": kept_intents}
    lines = lambda content, prefix: "".join(  # noqa: E731
        json.dumps(complete(intent, content_id=content)) + "\n" for intent in intents[prefix]
    )
    assert cli(cli_env, "append", "-", stdin="".join(json.dumps(c) + "\n" for c in setup))
    with citus.stopped(worker):
        refused = cli(cli_env, "append", "-", stdin=lines(lost_content, "pi_l"))
        accepted = cli(cli_env, "append", "-", stdin=lines(kept_content, "pi_k"))
    assert refused.returncode == 2, refused.stderr
    assert refused.stdout == ""  # not one line answered: none committed
    assert "remote node" in refused.stderr
    assert "the first line not committed is line 1" in refused.stderr.splitlines()[-1]
    assert "Traceback" not in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert [a["status"] for a in answers(accepted.stdout)] == ["accepted"] * 3
    retried = cli(cli_env, "append", "-", stdin=lines(lost_content, "pi_l"))
    assert retried.returncode == 0, retried.stderr
    assert [a["status"] for a in answers(retried.stdout)] == ["accepted"] * 3
    rows = conn.execute(
        "SELECT organization_id::text, count(*) FROM purchases GROUP BY 1"
    ).fetchall()
    assert dict(rows) == {lost: 3, kept: 3}


def pis(prefix: str = "pi_") -> Iterator[str]:
    """Payment intents, ``prefix`` and a number."""
    return (f"{prefix}{n}" for n in range(10_000))


@pytest.mark.citus
def test_a_key_whose_claim_is_on_a_stopped_worker_is_refused_retryably_and_nothing_else(
    citus: CitusCluster, settings: Settings, conn: Conn, cli_env: dict[str, str]
) -> None:
    """A key is one namespace across organizations (docs/cli.md): a payment intent used by
    one organization is refused to another, so its claim lives in one place, the shard of
    the key's hash, whichever organization sends it (docs/scaling.md, "What is left" 1 b).
    An organization of the worker that is up, completing a purchase whose intent's claim is
    on the stopped worker, is answered the retryable error naming the remote node, with
    nothing of it written, while its purchases whose claims are on its own worker are
    accepted; once the worker is back the same line is accepted, and sent again it is a
    duplicate: nothing twice."""
    lost, kept, worker, _, kept_content = _two_organizations(citus, settings, conn)
    claims = f"{settings.schema}.ledger_key_claims"
    away = next(
        i
        for i in pis("pi_away")
        if citus.placement(conn, claims, ids.purchase_id(i)).worker == worker
    )
    home = _kept(citus, conn, settings, worker, ids.purchase_id, pis("pi_home"), 1)[0]
    conn.commit()
    setup = [org(lost, "Lost"), org(kept, "Kept"), user("creator"), user("alice")]
    setup += [publish(kept_content, kept)]
    line = lambda intent: json.dumps(complete(intent, content_id=kept_content)) + "\n"  # noqa: E731
    assert cli(cli_env, "append", "-", stdin="".join(json.dumps(c) + "\n" for c in setup))
    with citus.stopped(worker):
        refused = cli(cli_env, "append", "-", stdin=line(away))
        accepted = cli(cli_env, "append", "-", stdin=line(home))
    assert refused.returncode == 2, refused.stderr
    assert refused.stdout == ""
    assert "remote node" in refused.stderr
    assert "the first line not committed is line 1" in refused.stderr.splitlines()[-1]
    assert "Traceback" not in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert [a["status"] for a in answers(accepted.stdout)] == ["accepted"]
    intents = conn.execute("SELECT stripe_payment_intent_id FROM purchases").fetchall()
    conn.commit()
    assert intents == [(home,)]  # the refused line left no purchase, no event, no claim
    held = conn.execute(
        "SELECT count(*) FROM ledger_key_claims WHERE claim_id = %s", (ids.purchase_id(away),)
    ).fetchone()
    conn.commit()
    assert held == (0,)
    retried = cli(cli_env, "append", "-", stdin=line(away) + line(away))
    assert retried.returncode == 0, retried.stderr
    assert [a["status"] for a in answers(retried.stdout)] == ["accepted", "duplicate"]
