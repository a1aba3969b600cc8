"""The playback store's write on the distributed layout (Citus, docs/scaling.md "The playback
store on Citus").

Citus refuses the single server's one statement (``playback_record``, migration 0020): its
walk over the group is a recursive CTE, and its probes join the group's function scan to
distributed tables with no filter on the distribution column. Here a group is decided by
``decide`` itself (the specification) on facts read by statements Citus plans, and written
by statements Citus routes, in one transaction that takes nothing on the coordinator: each
organization draws its own positions (``playback_heads``, migration 0027) under its own row
lock, on its worker, so a group of one organization commits there alone and groups of
different organizations never wait for each other (docs/stream.md, "The playback store's
stream"):

- the content's organization, known once read (it never changes): only content not known
  yet is read from every worker (content is distributed by its organization); the routed
  statement below checks the content is still there;
- per organization, one statement whose distributed tables are all filtered by that
  organization (``content_access``, ``playback_base``, ``playback_heartbeats``): routed to
  the one worker that holds it;
- the keys (``playback_keys``, distributed by the key itself: a key is one namespace for
  every organization) and the log (``ledger_events``) by ``= ANY``;
- the keys claimed before the group's transaction, each in a transaction of its own on its
  shard (``ledger.playback.keys.claim``), as the log's are (``ledger.log.claims``);
- the writes: each organization's positions drawn first (its head row, in uuid order of the
  organizations), in the group's order, then the records and the ``content_access`` stamps
  per organization (one worker each), ``video_playback`` per
  organization by the same guarded upsert (it carries the organization since migration
  0026, distributed beside its content: the group's rows of one organization touch its one
  worker).

The answers are ``decide``'s, so every rule holds as on one server; a lost race raises, as
the single statement does, and the caller decides the group again.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.domain import ids
from ledger.playback import keys, partitions
from ledger.playback.decide import Decided, Heartbeat, newest
from ledger.playback.statements import NEWEST_WINS

_ORGS = "SELECT id, organization_id FROM {content} WHERE id = ANY(%s::uuid[])"

# A content's organization never changes, and a content id is never another content's (its
# claim, migration 0023): known once, it is kept, so a group of known content reads no
# worker but its organizations'. Whether the content is still there is read by the routed
# statement below (``live``); one found gone is forgotten and asked of every worker again.
# By schema: a schema dropped and made again (the tests' pool) may publish the same id anew.
_KNOWN: dict[tuple[str, str], Any] = {}
_PLATFORM = UUID(int=0)  # the platform's chain (ledger.log.chains.PLATFORM)
_KNOWN_MAX = 1_000_000  # about 200 MB at most; emptied whole when full

# one organization's facts: every distributed table filtered by it, so Citus routes the
# statement to its worker whole (the group's rows bound as arrays)
_FACTS = """
    SELECT i.n, a.created_at AS access_since, a.expires_at AS access_expires, b.horizon,
           h.seen IS NOT NULL AS seen, c.live IS NOT NULL AS live
    FROM unnest(%(n)s::int[], %(user)s::text[], %(content)s::uuid[], %(identity)s::text[],
                %(at)s::timestamptz[]) AS i(n, user_id, content_id, identity, occurred_at)
    LEFT JOIN LATERAL (SELECT true AS live FROM {content} c
                       WHERE c.organization_id = %(org)s AND c.id = i.content_id LIMIT 1) c
        ON true
    LEFT JOIN LATERAL (SELECT a.created_at, a.expires_at FROM {access} a
                       WHERE a.organization_id = %(org)s AND a.user_id = i.user_id
                         AND a.content_id = i.content_id LIMIT 1) a ON true
    LEFT JOIN LATERAL (SELECT b.horizon FROM {base} b
                       WHERE b.organization_id = %(org)s AND b.user_id = i.user_id
                         AND b.content_id = i.content_id LIMIT 1) b ON true
    LEFT JOIN LATERAL (SELECT true AS seen FROM {hb} h
                       WHERE h.organization_id = %(org)s AND h.identity = i.identity
                         AND h.occurred_at = i.occurred_at LIMIT 1) h ON true
"""

# the group's rows of one organization as literal VALUES, the organization a constant in
# each: Citus routes the statement to that organization's worker whole (an INSERT ... SELECT
# from unnest is planned through the coordinator, whose intermediate result travels on a
# connection of its own and makes the commit a two-phase one)
_RECORDS = (
    "INSERT INTO {hb} (position, identity, occurred_at, user_id, content_id, organization_id, "
    "position_seconds, duration_seconds, completed, idempotency_key) VALUES "
)
_RECORD_TYPES = [
    "bigint",
    "text",
    "timestamptz",
    "text",
    "uuid",
    "uuid",
    "int",
    "int",
    "bool",
    "text",
]

_STAMP = """
    UPDATE {access} a
    SET last_accessed_at = GREATEST(a.last_accessed_at, %(at)s),
        updated_at = GREATEST(a.updated_at, %(at)s)
    WHERE a.organization_id = %(org)s AND a.user_id = %(user)s AND a.content_id = %(content)s
"""

# one organization's rows (migration 0026: video_playback carries it, distributed beside its
# content), so the upsert goes to that organization's worker
_SHOWN = (
    "INSERT INTO {vp} AS v (id, user_id, content_id, organization_id, position_seconds, "
    "duration_seconds, completed, updated_at, created_at) VALUES "
)
_SHOWN_TYPES = ["uuid", "text", "uuid", "uuid", "int", "int", "bool", "timestamptz", "timestamptz"]
_NOTHING = sql.SQL("")


def _t(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def _q(conn: psycopg.Connection[Any], text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(
        content=_t(schema, "content"),
        access=_t(schema, "content_access"),
        base=_t(schema, "playback_base"),
        hb=_t(schema, "playback_heartbeats"),
        vp=_t(schema, "video_playback"),
    )


def facts(
    conn: psycopg.Connection[Any], schema: str, heartbeats: list[Heartbeat]
) -> list[dict[str, Any]]:
    """The group's facts, one row per heartbeat in the shape of the single server's
    ``facts`` statement (``ledger.playback.statements``), read by statements Citus plans.
    The keys are read first: a keyed heartbeat takes its key's claimed moment, replaced
    in ``heartbeats`` (``keys.adopt``), before its stored record is looked for."""
    claims = keys.held(conn, schema, heartbeats)
    keys.adopt(heartbeats, claims)
    rows: list[dict[str, Any]] = [
        {
            "n": n,
            "user_live": False,
            "organization_id": None,
            "access_since": None,
            "access_expires": None,
            "horizon": None,
            "seen": False,
            "key_fingerprint": None,
            "key_claimed": None,  # the fingerprint its key holds in the store (``keys``)
            "log_key": False,
            "legacy": False,
        }
        for n in range(len(heartbeats))
    ]
    users = {h.user_id for h in heartbeats}
    live = {
        r["id"]
        for r in conn.execute(
            sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(_t(schema, "users")),
            (list(users),),
        )
    }
    for n, h in enumerate(heartbeats):
        rows[n]["user_live"] = h.user_id in live
    pending = list(range(len(heartbeats)))
    fresh = False  # the second pass asks every worker for what the first found gone
    while pending:
        wanted = {heartbeats[n].content_id for n in pending}
        orgs, read = _organizations(conn, schema, wanted, fresh)
        fresh = True
        by_org: dict[Any, list[int]] = defaultdict(list)
        for n in pending:
            org = orgs.get(heartbeats[n].content_id)
            rows[n]["organization_id"] = org
            if org is not None:
                by_org[org].append(n)
        gone: list[int] = []  # known, but the content is not there any more: ask again
        for org, members in by_org.items():
            found = conn.execute(
                _q(conn, _FACTS, schema),
                {
                    "org": org,
                    "n": members,
                    "user": [heartbeats[n].user_id for n in members],
                    "content": [heartbeats[n].content_id for n in members],
                    "identity": [heartbeats[n].identity for n in members],
                    "at": [heartbeats[n].occurred_at for n in members],
                },
            )
            for r in found:
                if not r["live"]:
                    _KNOWN.pop((schema, heartbeats[r["n"]].content_id), None)
                    rows[r["n"]]["organization_id"] = None
                    gone.append(r["n"])
                    continue
                rows[r["n"]].update(
                    access_since=r["access_since"],
                    access_expires=r["access_expires"],
                    horizon=r["horizon"],
                    seen=r["seen"],
                )
        pending = [n for n in gone if heartbeats[n].content_id not in read]
    stored = {key: c.fingerprint for key, c in claims.items()}
    key_ids = {h.key: ids.command_key_id("idempotency_key", h.key) for h in heartbeats if h.key}
    pair_ids = {n: ids.playback_id(h.user_id, h.content_id) for n, h in enumerate(heartbeats)}
    # a pair's heartbeats recorded in the log before the store are its content's
    # organization's events, or the platform's (a log older than its chains, migration
    # 0014): those two chains' shards only; a key's events may be in any chain
    owners = {r["organization_id"] for r in rows if r["organization_id"] is not None}
    pairs = [pair_ids[n] for n, r in enumerate(rows) if r["organization_id"] is not None]
    in_log: set[Any] = set()
    if pairs:
        in_log |= _in_log(conn, schema, pairs, [*sorted(owners, key=str), _PLATFORM])
    if key_ids:
        in_log |= _in_log(conn, schema, list(key_ids.values()), None)
    for n, h in enumerate(heartbeats):
        if h.key is not None:
            rows[n]["key_claimed"] = stored.get(h.key)
            rows[n]["key_fingerprint"] = keys.recorded(claims.get(h.key), h, rows[n])
            rows[n]["log_key"] = h.key not in stored and key_ids[h.key] in in_log
        rows[n]["legacy"] = pair_ids[n] in in_log
    return rows


def _in_log(
    conn: psycopg.Connection[Any], schema: str, wanted: list[Any], chains: list[Any] | None
) -> set[Any]:
    """Which of the ``wanted`` aggregate ids have events in the log (in ``chains`` only,
    when given: Citus reads only their shards)."""
    text = "SELECT DISTINCT originator_id FROM {} WHERE originator_id = ANY(%s::uuid[])"
    params: tuple[Any, ...] = (wanted,)
    if chains is not None:  # a filter Citus prunes shards by (no OR, no NULL test)
        text += " AND organization_id = ANY(%s::uuid[])"
        params = (wanted, chains)
    query = sql.SQL(text).format(_t(schema, "ledger_events"))
    return {r["originator_id"] for r in conn.execute(query, params)}


def _organizations(
    conn: psycopg.Connection[Any], schema: str, content: set[str], fresh: bool
) -> tuple[dict[str, Any], set[str]]:
    """Each content's organization (a content not found has none), and the ids read from
    the workers now: those not known yet, or all with ``fresh``."""
    found = {} if fresh else {c: _KNOWN[(schema, c)] for c in content if (schema, c) in _KNOWN}
    rest = sorted(content - found.keys())
    if rest:
        if len(_KNOWN) >= _KNOWN_MAX:
            _KNOWN.clear()
        for r in conn.execute(_q(conn, _ORGS, schema), (rest,)):
            found[str(r["id"])] = _KNOWN[(schema, str(r["id"]))] = r["organization_id"]
    return found, set(rest)


claim_keys = keys.claim  # the store's call (``ledger.playback.store``): keys first
release_keys = keys.release  # and the claims of a race lost to an erasure given back


def missing_days(conn: psycopg.Connection[Any], schema: str, accepted: list[Heartbeat]) -> set[Any]:
    """The days of the accepted heartbeats whose partitions do not exist yet."""
    days = {partitions.day(h.occurred_at) for h in accepted}
    return days - set(partitions.existing(conn, schema))


def write(conn: psycopg.Connection[Any], schema: str, decided: Decided) -> dict[int, int]:
    """Writes the accepted heartbeats; returns each one's position (its organization's),
    by its index in ``decided.accepted``, drawn before anything is written."""
    accepted = [h for h, _ in decided.accepted]
    if not accepted:
        return {}
    by_org: dict[Any, list[int]] = defaultdict(list)
    for m, (_, org) in enumerate(decided.accepted):
        by_org[org].append(m)
    positions: dict[int, int] = {}
    for org in sorted(by_org, key=str):  # heads in uuid order: two groups never deadlock
        members = by_org[org]
        last = _draw(conn, schema, org, len(members))
        for k, m in enumerate(members):  # the group's order within its organization
            positions[m] = last - len(members) + 1 + k
    for org, members in by_org.items():
        hs = [accepted[m] for m in members]
        _insert(
            conn,
            _q(conn, _RECORDS, schema),
            _RECORD_TYPES,
            [
                (
                    positions[m],
                    h.identity,
                    h.occurred_at,
                    h.user_id,
                    h.content_id,
                    org,
                    h.command.position_seconds,
                    h.command.duration_seconds,
                    h.completed,
                    h.key,
                )
                for m, h in zip(members, hs, strict=True)
            ],
        )
        shown_rows = sorted(newest(hs).items())
        for (user, content), shown in shown_rows:
            at = shown.heartbeat.occurred_at  # the newest, as the single statement's max
            conn.execute(
                _q(conn, _STAMP, schema),
                {"org": org, "user": user, "content": content, "at": at},
            )
        _insert(
            conn,
            _q(conn, _SHOWN, schema),
            _SHOWN_TYPES,
            [
                (
                    ids.playback_id(u, c),
                    u,
                    c,
                    org,
                    s.heartbeat.command.position_seconds,
                    s.heartbeat.command.duration_seconds,
                    s.completed,
                    s.heartbeat.occurred_at,
                    s.first,
                )
                for (u, c), s in shown_rows
            ],
            sql.SQL(NEWEST_WINS),
        )
    return positions


def values(
    head: sql.Composed,
    types: list[str],
    rows: list[tuple[Any, ...]],
    tail: sql.Composable = _NOTHING,
) -> tuple[sql.Composed, list[Any]]:
    """``head`` with one ``VALUES`` row of placeholders per row (each cast to its type),
    then ``tail``, and the values to bind (never formatted into the text)."""
    row = sql.SQL("({})").format(sql.SQL(", ").join(sql.SQL("%s::" + kind) for kind in types))
    statement = sql.Composed([head, sql.SQL(", ").join([row] * len(rows)), tail])
    return statement, [value for values in rows for value in values]


def _insert(
    conn: psycopg.Connection[Any],
    head: sql.Composed,
    types: list[str],
    rows: list[tuple[Any, ...]],
    tail: sql.Composable = _NOTHING,
) -> None:
    conn.execute(*values(head, types, rows, tail))


def _draw(conn: psycopg.Connection[Any], schema: str, org: Any, count: int) -> int:
    """The last of ``count`` positions drawn for ``org``: one routed upsert of its head row
    (``playback_heads``, migration 0027, on the organization's worker), whose lock the
    transaction holds to its commit, so the organization's positions commit in their order
    and are gapless (a rolled-back draw rolls back); other organizations never wait."""
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} AS h (organization_id, position) VALUES (%s::uuid, %s)"
            " ON CONFLICT (organization_id) DO UPDATE SET position = h.position + EXCLUDED.position"
            " RETURNING h.position"
        ).format(_t(schema, "playback_heads")),
        (org, count),
    ).fetchone()
    assert row is not None
    return int(row["position"])
