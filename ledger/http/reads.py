"""The read endpoints: the player's access check, the revenue report and the log as a
stream, each the same answer as its CLI counterpart (``ledger.reading.tables``,
``audit revenue --format json``, ``ledger events``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from ledger.audit import render
from ledger.audit.revenue import RevenueQuery, checked_revenue, parse_moment
from ledger.http import event_feed as feed
from ledger.http import openapi
from ledger.http.answers import BadRequest, Forbidden, NotFound, ServiceError, json_response
from ledger.http.auth import Token, require
from ledger.http.backend import Backend
from ledger.http.inputs import checked_id
from ledger.log.shapes import UndecodableEvent
from ledger.playback import stream as playback_stream
from ledger.privacy import older
from ledger.privacy.export import export
from ledger.reading import stream, tables

router = APIRouter()
MAX_EVENTS = 1000


@router.get(
    "/v1/access/{user_id}/{content_id}",
    summary="May this user play this content now?",
    responses=openapi.ACCESS_RESPONSES,
    dependencies=[Depends(require("access"))],
)
async def get_access(request: Request, user_id: str, content_id: UUID) -> Response:
    """With a token bound to an organization, only that organization's access rows are
    seen (row-level security): another organization's content is never allowed."""
    backend: Backend = request.app.state.backend
    user_id = checked_id(user_id, "user_id")
    token: Token = request.state.token
    answer = await backend.read(
        lambda conn: tables.lookup(conn, user_id, str(content_id)), token.organization
    )
    return json_response(answer)


@router.get(
    "/v1/revenue",
    summary="The revenue report (audit revenue --format json)",
    dependencies=[Depends(require("read"))],
)
async def get_revenue(
    request: Request,
    organization: UUID | None = None,
    start: Annotated[str | None, Query(alias="from", description="inclusive")] = None,
    end: Annotated[str | None, Query(alias="to", description="exclusive")] = None,
    as_of: Annotated[str | None, Query(description="as the ledger knew it then")] = None,
    group_by: Literal["month", "day", "content", "creator", "organization"] | None = None,
    source: Annotated[str | None, Query(description="cli, api, http, stripe or unknown")] = None,
) -> Response:
    backend: Backend = request.app.state.backend
    token: Token = request.state.token
    if token.organization is not None:
        if organization is not None and str(organization) != token.organization:
            raise Forbidden(
                f"organization {organization} is not this token's organization "
                f"{token.organization}",
                "organization",
            )
        organization = UUID(token.organization)
    try:
        query = RevenueQuery(
            organization=organization,
            start=parse_moment(start, "from") if start else None,
            end=parse_moment(end, "to", exclusive=True) if end else None,
            as_of=parse_moment(as_of, "as_of") if as_of else None,
            group_by=group_by,
            source=source,
        )
    except ValueError as error:
        message = str(error).replace("--as-of", "as_of").replace("--", "")
        field = re.match(r"[a-z_]+", message)
        raise BadRequest(message, field.group() if field else None) from None

    def report(conn: Any) -> str:
        try:
            return render.as_json(checked_revenue(conn, backend.settings.schema, query))
        except UndecodableEvent as error:
            raise ServiceError(str(error)) from None

    body = await backend.read(report, token.organization)
    return Response(body, media_type="application/json")


@router.get(
    "/v1/users/{user_id}/export",
    summary="Everything the ledger holds about one person (docs/privacy.md)",
    dependencies=[Depends(require("users"))],
)
async def get_user_export(request: Request, user_id: str) -> Response:
    """One JSON document (``ledger users export``); erased or unknown: 404 ``not_found``.
    A person's data spans organizations: a token bound to one may not read it."""
    backend: Backend = request.app.state.backend
    user_id = checked_id(user_id, "user_id")
    token: Token = request.state.token
    if token.organization is not None:
        raise Forbidden("a token bound to an organization may not export a person's data")
    document = await backend.read(lambda conn: export(conn, backend.settings.schema, user_id), None)
    if document is None:
        raise NotFound(f"no user {user_id!r} (erased, or never registered)", "user_id")
    return json_response(document)


@router.get(
    "/v1/users/{user_id}/older-events",
    summary="The events that still name a person in the clear (docs/privacy.md)",
    dependencies=[Depends(require("users"))],
)
async def get_user_older_events(
    request: Request,
    user_id: str,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=older.PAGE)] = older.PAGE,
) -> Response:
    """The events after position ``after`` naming ``user_id`` in the clear (written
    before subjects), at most ``limit``; ``next_after`` is the position to ask after for
    the next page (``null``: no more). Before or after an erasure, an empty list for an
    id no older event names. A token bound to an organization may not read it."""
    backend: Backend = request.app.state.backend
    user_id = checked_id(user_id, "user_id")
    token: Token = request.state.token
    if token.organization is not None:
        raise Forbidden("a token bound to an organization may not read a person's data")
    events = await backend.read(
        lambda conn: older.naming(conn, backend.settings.schema, user_id, after, limit), None
    )
    more = len(events) == limit
    return json_response({"events": events, "next_after": events[-1]["position"] if more else None})


@router.get(
    "/v1/events",
    summary="The log in position order, or every chain after a cursor (ledger events)",
    dependencies=[Depends(require("read"))],
)
async def get_events(
    request: Request,
    after: Annotated[
        str | None,
        Query(
            max_length=4_000_000,
            description="a position (notification_id, the global order), or a cursor of "
            "every chain: ORGANIZATION:POSITION joined by commas ('platform' for the "
            "platform's chain), as next_after gives it; default: the start, in the log's order",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 100,
    topic: Annotated[list[str] | None, Query(description="repeatable")] = None,
    source: Annotated[str | None, Query(description="cli, api, http, stripe or unknown")] = None,
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
) -> Response:
    """With a token bound to an organization, only the events that name it are read
    (row-level security on the log: ``ledger db roles``). ``next_after`` is in the form
    ``after`` was given in (a cursor when none was given and the log is in the
    ``organization`` order, docs/stream.md)."""
    backend: Backend = request.app.state.backend
    token: Token = request.state.token
    try:
        start = feed.parse_after(after)
        topics = stream.check_topics(topic or [])
        provenance = stream.ProvenanceFilter(source, correlation_id, idempotency_key)
    except ValueError as error:
        message = str(error)
        raise BadRequest(message, message.split(":", 1)[0]) from None

    def read(conn: Any) -> dict[str, Any]:
        try:
            return feed.read_page(
                conn, backend.settings.schema, start, limit, topics=topics, provenance=provenance
            )
        except UndecodableEvent as error:
            raise ServiceError(str(error)) from None
        except ValueError as error:
            raise BadRequest(str(error), "after") from None

    return json_response(await backend.read(read, token.organization))


@router.get(
    "/v1/playback/events",
    summary="The playback store's retained heartbeats in position order (ledger playback events)",
    dependencies=[Depends(require("read"))],
)
async def get_playback_events(
    request: Request,
    after: Annotated[
        str | None,
        Query(
            max_length=4_000_000,
            description="a position (a single server's store), or on the distributed store "
            "a cursor of every organization: ORGANIZATION:POSITION joined by commas, as "
            "next_after gives it; default: the start",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 100,
) -> Response:
    """Watch time for analytics: ``{"heartbeats": [...], "next_after": P}``, resumable
    with ``after=P``: a position, or on the distributed store (each organization its own
    positions) a cursor's text. A token bound to an organization reads its content's
    heartbeats only (filtered by the store's ``organization_id``)."""
    backend: Backend = request.app.state.backend
    token: Token = request.state.token
    schema = backend.settings.schema
    try:
        given = feed.parse_after(after)
    except ValueError as error:
        raise BadRequest(str(error), "after") from None

    def read(conn: Any) -> dict[str, Any]:
        try:
            start = playback_stream.start(conn, schema, given or 0)
        except ValueError as error:
            raise BadRequest(str(error), "after") from None
        if isinstance(start, int):
            records = playback_stream.read(conn, schema, start, limit, token.organization)
            return {
                "heartbeats": records,
                "next_after": records[-1]["position"] if records else start,
            }
        records, cursor = playback_stream.read_cursor(
            conn, schema, start, limit, token.organization
        )
        return {"heartbeats": records, "next_after": str(cursor)}

    return json_response(await backend.read(read))
