"""A log written before the chains, distributed, with the platform's worker stopped (issue 28).

The golden log of v1 was written before migration 0014: every event of it is in the
platform's chain, its organizations' registrations and accesses' first events among them
(``chains.LEGACY_TOPICS``). Loaded on one server, upgraded and placed by ``ledger db
distribute``, the versions those aggregates hold there are kept on the coordinator
(``ledger_legacy_versions``, migration 0033), so a decision reads the platform's chain only
for such an aggregate it has not read yet (``ledger.log.routed``). With the platform's
worker stopped, an organization of v1 on the other worker publishes, grants and sells from
a process that read its registration before, and grants a new content of it from a process
that read nothing; a publication needing the registration not read yet answers the
retryable error naming the remote node, writes nothing, and goes through once the worker is
back. The answers and the tables are those of the same commands on one server, and the log
verifies and rebuilds to its rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest

from ledger import api
from ledger.config import Settings
from ledger.database import distribution
from ledger.database.connections import connect
from ledger.domain import ids
from ledger.log.chains import PLATFORM
from ledger.service.application import Ledger
from tests.citus_support import CitusCluster
from tests.integration.test_golden_log import _golden, environment
from tests.stopped_workers import messages, worker_of
from tests.support import append, cli, complete, dump_all, grant, publish, t

pytestmark = pytest.mark.citus
Conn = psycopg.Connection[Any]


def _answer(ledger: Ledger, command: dict[str, Any]) -> tuple[str, str | None]:
    result = append(ledger, command)[0]
    return result.status, result.error.message if result.error else None


def _fitting(found: Iterator[str], fits: Callable[[str], bool]) -> str:
    return next(v for v in found if fits(v))


def test_a_legacy_log_decides_without_the_platforms_worker_what_it_read_before(
    citus: CitusCluster, fresh: Callable[[], Settings]
) -> None:
    settings, single = fresh(), fresh()
    schema = settings.schema
    log, claims = f"{schema}.ledger_events", f"{schema}.ledger_key_claims"
    with connect(settings, autocommit=True) as conn:
        _golden(settings, conn)
        with connect(settings) as placing:
            distribution.distribute(placing, schema)
            placing.commit()
        kept = conn.execute("SELECT count(*) FROM ledger_legacy_versions").fetchone()
        assert kept is not None and kept[0] > 0  # v1's organizations and accesses
        platform = worker_of(citus, conn, log, PLATFORM)
        organizations = [r[0] for r in conn.execute("SELECT id::text FROM organizations")]
        b = next(o for o in organizations if worker_of(citus, conn, log, UUID(o)) != platform)
        home = worker_of(citus, conn, log, UUID(b))
        people = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id")]
        creator, v1, v2, v3 = people[:4]  # registered in v1, named by their ids

        def at_home(*claimed: UUID) -> bool:  # each claim on B's worker (1 b: not stopped)
            return all(worker_of(citus, conn, claims, c) == home for c in claimed)

        new = (str(uuid.uuid5(UUID(b), f"after-{n}")) for n in range(1000))
        c1 = _fitting(new, lambda c: at_home(ids.content_id(c), ids.access_id(v1, c)))
        c2 = _fitting(
            new, lambda c: at_home(ids.content_id(c), *(ids.access_id(v, c) for v in (v2, v3)))
        )
        c3 = _fitting(new, lambda c: at_home(ids.content_id(c)))
        intent = _fitting(
            (f"pi_legacy_{n}" for n in range(1000)), lambda i: at_home(ids.purchase_id(i))
        )

    warm_up = publish(c1, b, creator=creator, at=t(40))
    stopped = [  # (the process, the command) while the platform's worker is stopped
        ("warm", publish(c2, b, creator=creator, at=t(40, 13))),
        ("warm", grant(v1, c1, "preview", at=t(40, 14))),
        ("warm", complete(intent, customer=v2, content_id=c2, at=t(40, 15))),
        ("warm", grant(v1, c1, "preview", at=t(40, 14))),  # the same again: duplicate
        ("cold", grant(v3, c2, at=t(40, 16))),  # nothing of before the chains
    ]
    needs_platform = publish(c3, b, creator=creator, at=t(40, 17))  # B's registration
    with api.open_ledger(settings) as warm, api.open_ledger(settings) as cold:
        processes = {"warm": warm, "cold": cold}
        assert _answer(warm, warm_up) == ("accepted", None)  # reads B's registration
        assert cold.recorder.is_distributed()  # type: ignore[attr-defined]
        assert cold.recorder.legacy_versions is True  # type: ignore[attr-defined]
        with citus.stopped(platform):
            answers = [_answer(processes[p], c) for p, c in stopped]
            with pytest.raises(Exception) as caught:
                append(cold, needs_platform)
            assert "remote node" in messages(caught.value), messages(caught.value)
        answers.append(_answer(cold, needs_platform))  # the worker back
    assert answers == [("accepted", None)] * 3 + [("duplicate", None)] + [("accepted", None)] * 2

    # the same commands on one server, its log v1's too: the same answers and the same rows
    with connect(single, autocommit=True) as conn:
        _golden(single, conn)
    with api.open_ledger(single) as one:
        commands = [warm_up, *(c for _, c in stopped), needs_platform]
        on_one = [_answer(one, c) for c in commands]
    assert on_one == [("accepted", None), *answers]
    with connect(settings) as conn, connect(single) as other:
        distributed_rows = dump_all(conn)
        assert distributed_rows == dump_all(other)
        in_platform = conn.execute(
            "SELECT count(*) FROM ledger_events WHERE organization_id = %s AND recorded_at > now()"
            " - interval '1 hour'",
            (PLATFORM,),
        ).fetchone()
        assert in_platform == (0,)  # nothing of B's went to the platform's chain
        conn.rollback()

    env = environment(settings)
    verified = cli(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    rebuilt = cli(env, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    with connect(settings) as conn:
        assert dump_all(conn) == distributed_rows
