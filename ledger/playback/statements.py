"""The playback store's statements, rendered once per schema (``ledger.playback.store``).

``record`` decides and writes a whole group in one call of ``playback_record`` (migration
0020): the group bound once as JSON, each fact a one-row index probe, the rules of
``ledger.playback.decide`` (the specification: ``tests/property/test_playback_sql_decision.py``
holds the two equal for all groups) as a recursive walk over the group in its order, the
writes as data-modifying CTEs of the heartbeats it accepted, and every heartbeat's answer
returned by the same call. ``facts`` is what ``check`` (an ``--atomic`` batch's heartbeats)
reads for ``decide``: the same probes, writing nothing.
"""

from __future__ import annotations

from functools import lru_cache

from psycopg import sql

# video_playback's guarded upsert (docs/events.md): the newest occurred_at wins (the later
# position on a tie), ``completed`` only turns true, ``updated_at`` never moves back; as
# ``playback_record`` writes it (migration 0026: the key led by the organization), for the
# distributed store's write (``ledger.playback.distributed``) and the rebuild's fold
# (``ledger.playback.fold``)
NEWEST_WINS = """
    ON CONFLICT (organization_id, user_id, content_id) DO UPDATE SET
        position_seconds = CASE WHEN EXCLUDED.updated_at >= v.updated_at
            THEN EXCLUDED.position_seconds ELSE v.position_seconds END,
        duration_seconds = CASE WHEN EXCLUDED.updated_at >= v.updated_at
            THEN EXCLUDED.duration_seconds ELSE v.duration_seconds END,
        completed = v.completed OR EXCLUDED.completed,
        updated_at = GREATEST(v.updated_at, EXCLUDED.updated_at)
"""

# The group: one row per heartbeat, in its order (n), as ``playback_record`` reads it too
# (migration 0020); the columns a caller does not send are NULL.
_GROUP = (
    "json_to_recordset(%s::json) AS i(n int, user_id text, content_id uuid, "
    "occurred_at timestamptz, identity text, key text, fp text, key_id uuid, "
    "playback_id uuid, p int, d int, c bool, part text, user_asked bool, "
    "content_asked bool, log_asked bool, log_fp text, log_type text, legacy_asked bool, "
    "legacy_seen bool)"
)

# Each lookup a LATERAL probe of one row (LIMIT 1): an index probe per heartbeat whatever
# the tables' statistics, where an EXISTS may be planned as a hash of the whole table (the
# day's partition, the log) built for every group.
_PROBES = (
    "LEFT JOIN LATERAL (SELECT true AS live FROM {users} u WHERE u.id = i.user_id "
    "LIMIT 1) u ON true "
    "LEFT JOIN LATERAL (SELECT c.organization_id FROM {content} c "
    "WHERE c.id = i.content_id LIMIT 1) c ON true "
    "LEFT JOIN LATERAL (SELECT a.created_at, a.expires_at FROM {access} a "
    "WHERE a.organization_id = c.organization_id AND a.user_id = i.user_id "
    "AND a.content_id = i.content_id LIMIT 1) a ON true "
    "LEFT JOIN LATERAL (SELECT b.horizon FROM {base} b "
    "WHERE b.organization_id = c.organization_id AND b.user_id = i.user_id "
    "AND b.content_id = i.content_id LIMIT 1) b ON true "
    "LEFT JOIN LATERAL (SELECT true AS seen FROM {hb} h "
    "WHERE h.organization_id = c.organization_id AND h.identity = i.identity "
    "AND h.occurred_at = i.occurred_at LIMIT 1) h ON true "
    "LEFT JOIN LATERAL (SELECT k.fingerprint FROM {keys} k "
    "WHERE k.idempotency_key = i.key LIMIT 1) k ON true "
    "LEFT JOIN LATERAL (SELECT true AS found FROM {events} e "
    "WHERE e.originator_id = i.key_id LIMIT 1) ek ON true "
    "LEFT JOIN LATERAL (SELECT true AS found FROM {events} e "
    "WHERE e.originator_id = i.playback_id LIMIT 1) el ON true "
)

_FACTS = (
    "SELECT i.n, u.live IS NOT NULL AS user_live, c.organization_id, "
    "a.created_at AS access_since, a.expires_at AS access_expires, b.horizon, "
    "h.seen IS NOT NULL AS seen, k.fingerprint AS key_fingerprint, "
    "(k.fingerprint IS NULL AND ek.found IS NOT NULL) AS log_key, "
    "el.found IS NOT NULL AS legacy "
    "FROM " + _GROUP + " " + _PROBES + "ORDER BY i.n"
)


@lru_cache(maxsize=16)
def rendered(schema: str) -> dict[str, bytes]:
    """Rendered once per schema: psycopg renders a ``Composed`` again at every execute."""

    def t(name: str) -> sql.Identifier:
        return sql.Identifier(schema, name)

    tables = {
        "hb": t("playback_heartbeats"),
        "events": t("ledger_events"),
        "users": t("users"),
        "content": t("content"),
        "access": t("content_access"),
        "base": t("playback_base"),
        "keys": t("playback_keys"),
        "vp": t("video_playback"),
    }
    statements = {
        "facts": sql.SQL(_FACTS).format(**tables),
        # the decision and the writes: migration 0020 (one call, one round trip a group)
        "record": sql.SQL("SELECT * FROM {}(%s, %s)").format(t("playback_record")),
        "keys_of": sql.SQL(
            "SELECT idempotency_key, fingerprint FROM {keys} WHERE idempotency_key = ANY(%s)"
        ).format(**tables),
    }
    return {name: statement.as_bytes() for name, statement in statements.items()}
