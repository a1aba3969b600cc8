"""What the tests of a stopped worker share: where a row, a key's claim or an organization's
chain lives on the cluster, ids whose claims live on their organization's own worker (a
claim on a stopped worker fails its command: docs/scaling.md, "What is left" 1 b), and an
error's whole chain of causes, to name the remote node it failed on."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import psycopg

from ledger.domain import ids
from ledger.log.chains import PLATFORM
from tests import citus_support
from tests.citus_support import CitusCluster

Conn = psycopg.Connection[Any]


def worker_of(citus: CitusCluster, conn: Conn, table: str, value: object) -> citus_support.Worker:
    return citus.placement(conn, table, value).worker


def messages(error: BaseException | None) -> str:
    """The error and its causes, as one text."""
    found: list[str] = []
    while error is not None:
        found.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return " <- ".join(found)


def beside_the_platform(
    citus: CitusCluster, conn: Conn, log: str
) -> tuple[citus_support.Worker, uuid.UUID, uuid.UUID]:
    """The platform chain's worker, an organization whose chain lives on it and one whose
    chain lives on the other worker."""
    platform = worker_of(citus, conn, log, PLATFORM)
    candidates = list(itertools.islice(citus_support.organizations(), 64))
    beside = next(o for o in candidates if worker_of(citus, conn, log, o) == platform)
    apart = next(o for o in candidates if worker_of(citus, conn, log, o) != platform)
    return platform, beside, apart


def videos(
    citus: CitusCluster, conn: Conn, schema: str, organization: uuid.UUID, count: int
) -> list[str]:
    """``count`` content ids of the organization whose claims live on its own worker."""
    claims = f"{schema}.ledger_key_claims"
    worker = worker_of(citus, conn, f"{schema}.ledger_events", organization)
    found = (str(uuid.uuid5(organization, f"video-{n}")) for n in range(1000))
    return list(
        itertools.islice(
            (v for v in found if worker_of(citus, conn, claims, ids.content_id(v)) == worker), count
        )
    )


def home_ids(citus: CitusCluster, conn: Conn, schema: str, organization: uuid.UUID) -> Any:
    """A video and payment intents of the organization whose claims live on its own worker
    (a claim on the stopped worker fails its command: docs/scaling.md, "What is left" 1 b)."""
    claims = f"{schema}.ledger_key_claims"
    worker = worker_of(citus, conn, f"{schema}.ledger_events", organization)
    video = videos(citus, conn, schema, organization, 1)[0]
    intents = [
        i
        for i in (f"pi_{str(organization)[:8]}_{n}" for n in range(1000))
        if worker_of(citus, conn, claims, ids.purchase_id(i)) == worker
    ][:3]
    return video, intents
