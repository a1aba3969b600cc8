"""Appends of many organizations in parallel, on one server or on a Citus cluster (issue 28).

``python -m benchmarks.organizations --database-url URL [--organizations N] [--purchases M]
[--kind purchases|heartbeats]``: N threads, each completing M purchases (or recording M
heartbeats: the playback store, each organization its own positions on the distributed
layout, migration 0027) of an organization of its own through
``ledger.append`` on one opened ledger (group commit; per organization on a distributed
layout), against the same threads' raw single-row INSERT + COMMIT (the physical limit, in
the same run). On a Citus coordinator the schema is distributed first (``ledger db
distribute``). Run it against a single server and against the cluster and compare the two
lines side by side (docs/scaling.md, "Measured"); the ratio to the raw inserts on the same
server is what compares across machines.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import orjson
import psutil
import psycopg

import ledger
from benchmarks import references, workload
from benchmarks.concurrent import threaded_appends
from ledger.commands.base import Command
from ledger.commands.parsing import parse_command
from ledger.database import distribution
from ledger.log import chains

USERS = 50


class ServersMeter(references.Meter):
    """CPU seconds of every process of the servers whose data directories are under
    ``directory`` (a Citus cluster's three: ``LEDGER_CITUS_DIR``): each postmaster, the
    backends it has reaped (its children's times) and those alive, so the workers' share of
    an append is counted too, which ``Meter`` (this process's backends on the coordinator)
    cannot see."""

    def __init__(self, url: str, directory: str) -> None:
        super().__init__(url)
        self.directory = directory.rstrip("/") + "/"

    def _backends(self) -> dict[int, float]:
        used: dict[int, float] = {}
        for process in psutil.process_iter(["cmdline"]):
            line = process.info["cmdline"] or []
            if "-D" not in line or not any(a.startswith(self.directory) for a in line):
                continue
            try:
                times = process.cpu_times()
                used[process.pid] = sum(times[:4])  # its own, and its reaped children's
                for child in process.children():
                    child_times = child.cpu_times()
                    used[child.pid] = child_times.user + child_times.system
            except psutil.Error:
                continue
        return used


def _organization(index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-organization-{index}"))


def _video(organization: str, index: int) -> str:
    return str(uuid.uuid5(uuid.UUID(organization), f"video-{index}"))


def _setup(organizations: list[str], videos: int) -> list[bytes]:
    lines = [orjson.dumps({"type": "user.register", "user_id": "creator"})]
    lines += [orjson.dumps({"type": "user.register", "user_id": f"u{n}"}) for n in range(USERS)]
    for organization in organizations:
        lines.append(
            orjson.dumps(
                {"type": "organization.register", "organization_id": organization, "name": "B"}
            )
        )
        lines += [
            orjson.dumps(
                {
                    "type": "content.publish",
                    "content_id": _video(organization, v),
                    "organization_id": organization,
                    "creator_id": "creator",
                    "title": f"Video {v}",
                }
            )
            for v in range(videos)
        ]
    return lines


DAY = "2026-01-05"  # the heartbeats' day: its partition made in the setup


def _viewing(organizations: list[str]) -> list[bytes]:
    """Every user granted each organization's first video, and one heartbeat of each
    organization (its day's partition made before the measured part)."""
    lines = [
        orjson.dumps(
            {
                "type": "access.grant",
                "user_id": f"u{n}",
                "content_id": _video(organization, 0),
                "access_type": "subscription",
                "occurred_at": "2026-01-02T00:00:00+00:00",
            }
        )
        for organization in organizations
        for n in range(USERS)
    ]
    return lines + [orjson.dumps(_beat(organization, 0, -1)) for organization in organizations]


def _beat(organization: str, n: int, second: int) -> dict[str, Any]:
    minute, second = divmod(second + 1, 60)
    return {
        "type": "playback.progress",
        "user_id": f"u{n % USERS}",
        "content_id": _video(organization, 0),
        "position_seconds": n % 3600,
        "duration_seconds": 3600,
        "occurred_at": f"{DAY}T{10 + minute // 60:02d}:{minute % 60:02d}:{second:02d}+00:00",
    }


def _heartbeats(organization: str, count: int) -> list[Command]:
    return [parse_command(orjson.dumps(_beat(organization, n, n // USERS))) for n in range(count)]


def _purchases(organization: str, count: int, tag: str) -> list[Command]:
    return [
        parse_command(
            orjson.dumps(
                {
                    "type": "purchase.complete",
                    "stripe_payment_intent_id": f"pi_{tag}_{organization[:8]}_{n}",
                    "customer_id": f"u{n % USERS}",
                    "content_id": _video(organization, n // USERS),
                    "amount_paid_cents": 1999,
                    "currency": "usd",
                    "platform_fee_cents": 199,
                    "organization_fee_cents": 800,
                    "creator_payout_cents": 1000,
                }
            )
        )
        for n in range(count)
    ]


def measure(
    url: str,
    organizations: int,
    purchases: int,
    order: str = "global",
    servers: str | None = None,
    kind: str = "purchases",
) -> dict[str, Any]:
    """Purchases/s through the ledger, raw rows/s, and what the server is; ``order``: the
    log's (``ledger.log.chains``: ``organization`` takes no global lock; on Citus always,
    the log distributed by ``ledger db distribute``); ``servers``: the directory of the
    servers' data, to count all their CPU (``ServersMeter``), else this process's backends."""
    orgs = [_organization(i) for i in range(organizations)]
    with workload.scratch_schema(url) as settings:
        with psycopg.connect(url) as conn:
            citus = distribution.citus_version(conn)
            if citus is not None:  # the money tables and the log (`ledger db distribute`)
                distribution.distribute(conn, settings.schema)
                order = "organization"
                conn.commit()
            if order != "global":
                chains.set_order(conn, settings.schema, "organization")
                conn.commit()
        videos = -(-purchases // USERS)
        with ledger.open_ledger(settings) as app:
            setup = _setup(orgs, videos) + (_viewing(orgs) if kind == "heartbeats" else [])
            bad = [
                r
                for _, r in ledger.api.append_lines(app, setup, atomic=True)
                if r.status != "accepted"
            ]
            assert not bad, bad[:3]
            if kind == "heartbeats":
                per_thread = [_heartbeats(o, purchases) for o in orgs]
            else:
                per_thread = [_purchases(o, purchases, "m") for o in orgs]
            meter = ServersMeter(url, servers) if servers else references.Meter(url)
            rate, latencies = threaded_appends(app, per_thread, meter=meter)
        raw = references.raw_inserts(
            url, settings.schema, organizations * purchases, 600, organizations
        )
    latencies.sort()
    return {
        "server": (f"Citus {citus} coordinator" if citus else "single PostgreSQL")
        + (", log distributed" if citus else "")
        + f", {order} order",
        "organizations": organizations,
        "kind": kind,
        "purchases_per_s": rate,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "raw_rows_per_s": raw,
        "ratio": rate / raw,
        **meter.per(organizations * purchases),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.organizations")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--organizations", type=int, default=8)
    parser.add_argument(
        "--purchases", type=int, default=200, help="per organization (heartbeats: as many)"
    )
    parser.add_argument("--kind", choices=("purchases", "heartbeats"), default="purchases")
    parser.add_argument(
        "--order", choices=("global", "organization"), default="global", help="the log's order"
    )
    parser.add_argument(
        "--servers",
        metavar="DIR",
        help="count the CPU of every server whose data is under DIR (a Citus cluster's: "
        "$LEDGER_CITUS_DIR); else of this process's backends",
    )
    args = parser.parse_args(argv)
    found = measure(
        args.database_url, args.organizations, args.purchases, args.order, args.servers, args.kind
    )
    print(
        f"{found['server']}: {found['organizations']} organizations in parallel: "
        f"{found['purchases_per_s']:,.0f} {args.kind}/s (p50 {found['p50_ms']:.1f} ms, "
        f"p99 {found['p99_ms']:.1f} ms); raw INSERT+COMMIT {found['raw_rows_per_s']:,.0f} rows/s; "
        f"ratio {found['ratio']:.2f}; CPU per {args.kind[:-1]}: client {found['client_cpu_ms']:.1f} ms, "
        f"servers {_ms(found['server_cpu_ms'])}"
    )
    sys.stdout.flush()
    return 0


def _ms(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} ms"


if __name__ == "__main__":
    raise SystemExit(main())
