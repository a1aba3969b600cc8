"""``/healthz`` (the process answers), ``/readyz`` (it can do its work: the database
answers, every migration is applied, no projected table is stale) and ``/metrics``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ledger.database import migrations
from ledger.errors import ConfigurationError
from ledger.http.answers import ServiceError, json_response
from ledger.http.backend import Backend
from ledger.http.metrics import CONTENT_TYPE
from ledger.playback import compact
from ledger.upkeep import status as projection_status
from projections import freshness

router = APIRouter()
log = logging.getLogger("ledger.http")


@router.get("/healthz", summary="The process is up")
async def healthz() -> Response:
    return json_response({"status": "ok"})


def _checks(conn: Any, schema: str) -> dict[str, str]:
    missing = [s.migration.label for s in migrations.status(conn, schema) if s.applied_at is None]
    stale = sorted(freshness.stale(conn, schema))
    return {
        "database": "ok",
        "migrations": f"missing {', '.join(missing)}" if missing else "ok",
        "projections": f"stale {', '.join(stale)}" if stale else "ok",
    }


@router.get("/readyz", summary="Database reachable, migrations current, projections fresh")
async def readyz(request: Request) -> Response:
    backend: Backend = request.app.state.backend
    try:
        checks = await backend.read(lambda conn: _checks(conn, backend.settings.schema))
    except ServiceError as error:
        checks = {"database": error.message}
    ready = all(value == "ok" for value in checks.values()) and len(checks) == 3
    return json_response({"ready": ready, "checks": checks}, 200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    backend: Backend = request.app.state.backend
    try:
        statuses = await backend.call(lambda: projection_status.status(backend.settings))
    except ServiceError as error:
        log.warning("metrics: projection status not read: %s", error.message)
    else:
        for state in statuses:
            lag = state.lag if state.lag is not None else state.head
            backend.metrics.projection_lag.labels(state.name).set(lag)
            backend.metrics.projection_stale.labels(state.name).set(1 if state.stale else 0)
    try:
        store = await backend.read(lambda conn: _playback(conn, backend.settings.schema))
    except ServiceError as error:
        log.warning("metrics: playback store not read: %s", error.message)
    else:
        for measure, value in store.items():
            backend.metrics.playback.labels(measure).set(value)
    return Response(backend.metrics.render(), media_type=CONTENT_TYPE)


def _playback(conn: Any, schema: str) -> dict[str, float]:
    """The store's gauges (none before migration 0011)."""
    if not migrations.has_table(conn, schema, "playback_base"):
        return {}
    try:
        report = compact.status(conn, schema)
    except ConfigurationError as error:  # a bad LEDGER_PLAYBACK_RETENTION: said once, no 500
        log.warning("metrics: playback store not read: %s", error)
        return {}
    oldest = report["oldest"]
    age = (datetime.now(UTC) - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0
    return {
        "heartbeats": report["heartbeats"],
        "partitions": report["partitions"],
        "last_position": report["last_position"],
        "base_rows": report["base_rows"],
        "oldest_age_seconds": max(age, 0.0),
    }
