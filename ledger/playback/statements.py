"""The playback store's statements, rendered once per schema (``ledger.playback.store``).

``record`` decides and writes a whole group in one statement: the group bound once as
JSON, each fact a one-row index probe, the rules of ``ledger.playback.decide`` (the
specification: ``tests/property/test_playback_sql_decision.py`` holds the two equal for
all groups) as a recursive walk over the group in its order, the writes as data-modifying
CTEs of the heartbeats it accepted, and every heartbeat's answer returned by the same
statement. With the advisory lock before it and the commit after it, a group is one round
trip (pipeline mode).
"""

from __future__ import annotations

from functools import lru_cache

from psycopg import sql

# The group: one row per heartbeat, in its order (n). The columns after ``part`` are what
# the money log said, asked only when the statement answered ``lookup`` (NULL: not asked).
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
    "LEFT JOIN LATERAL (SELECT b.horizon FROM {base} b WHERE b.user_id = i.user_id "
    "AND b.content_id = i.content_id LIMIT 1) b ON true "
    "LEFT JOIN LATERAL (SELECT true AS seen FROM {hb} h WHERE h.identity = i.identity "
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

# The decision, heartbeat by heartbeat in the group's order, each on what the ones before
# it accepted (``decide``'s loop): ``keys`` (key to fingerprint) and ``ids`` carry only
# the keys and identities that occur twice in the group (``shared``), so the common group
# carries nothing. The checks in ``decide._check``'s order: the key, the user, the content,
# the same heartbeat stored or accepted before, the horizon, the access rule
# (``ledger.domain.access.check_playable``: a row, begun at or before the heartbeat, not
# expired at it). ``lookup``: the log must be asked first; ``partition``: the day's
# partition is missing. Either writes nothing: the group is decided again once known.
_RECORD = (
    "WITH RECURSIVE f AS MATERIALIZED (SELECT i.*, u.live IS NOT NULL AS user_live, "
    "c.organization_id AS org, a.created_at AS since, a.expires_at AS expires, b.horizon, "
    "h.seen IS NOT NULL AS seen, k.fingerprint AS store_fp, "
    "(k.fingerprint IS NULL AND ek.found IS NOT NULL) AS log_key, "
    "el.found IS NOT NULL AS legacy, "
    "count(*) OVER (PARTITION BY i.key) > 1 AND i.key IS NOT NULL AS shared_key, "
    "count(*) OVER (PARTITION BY i.identity) > 1 AS shared_id "
    "FROM " + _GROUP + " " + _PROBES + "), "
    "steps AS (SELECT -1 AS n, NULL::text AS status, NULL::text AS key_type, "
    "'{{}}'::jsonb AS keys, '{{}}'::text[] AS ids "
    "UNION ALL "
    "SELECT f.n, x.status, k.key_type, "
    "CASE WHEN x.status = 'accepted' AND f.shared_key "
    "THEN s.keys || jsonb_build_object(f.key, f.fp) ELSE s.keys END, "
    "CASE WHEN x.status = 'accepted' AND f.shared_id THEN s.ids || f.identity ELSE s.ids END "
    "FROM steps s JOIN f ON f.n = s.n + 1 "
    "CROSS JOIN LATERAL (SELECT coalesce(s.keys ->> f.key, f.store_fp, f.log_fp) AS used, "
    "CASE WHEN f.store_fp IS NULL AND f.log_fp IS NOT NULL AND NOT (s.keys ? f.key) "
    "THEN f.log_type ELSE 'playback.progress' END AS key_type) k "
    "CROSS JOIN LATERAL (SELECT CASE "
    "WHEN f.key IS NOT NULL AND k.used IS NOT NULL "
    "THEN CASE WHEN k.used = f.fp THEN 'duplicate' ELSE 'conflict' END "
    "WHEN f.key IS NOT NULL AND f.log_key AND f.log_asked IS NULL THEN 'lookup' "
    "WHEN NOT f.user_live THEN CASE WHEN f.user_asked THEN 'no_user' ELSE 'lookup' END "
    "WHEN f.org IS NULL THEN CASE WHEN f.content_asked THEN 'no_content' ELSE 'lookup' END "
    "WHEN f.seen OR f.identity = ANY(s.ids) OR f.legacy_seen THEN 'duplicate' "
    "WHEN f.legacy AND f.legacy_asked IS NULL THEN 'lookup' "
    "WHEN f.occurred_at < f.horizon THEN 'horizon' "
    "WHEN f.since IS NULL OR f.occurred_at < f.since OR f.expires <= f.occurred_at "
    "THEN 'no_access' "
    "WHEN to_regclass(f.part) IS NULL THEN 'partition' "
    "ELSE 'accepted' END AS status) x), "
    "acc AS MATERIALIZED (SELECT f.* FROM steps s JOIN f ON f.n = s.n "
    "WHERE s.status = 'accepted' "
    "AND NOT EXISTS (SELECT 1 FROM steps w WHERE w.status IN ('lookup', 'partition'))), "
    "keys AS (INSERT INTO {keys} (idempotency_key, fingerprint) "
    "SELECT key, fp FROM acc WHERE key IS NOT NULL), "
    "records AS (INSERT INTO {hb} (identity, occurred_at, user_id, content_id, "
    "organization_id, position_seconds, duration_seconds, completed, idempotency_key) "
    "SELECT identity, occurred_at, user_id, content_id, org, p, d, c, key FROM acc "
    "ORDER BY n RETURNING identity, position), "
    # per (user, content): the newest heartbeat (the later on a tie), any completed, the
    # first one's time (a new row's created_at), as ``decide.newest``
    "shown AS MATERIALIZED (SELECT playback_id, user_id, content_id, org, "
    "(array_agg(p ORDER BY occurred_at DESC, n DESC))[1] AS p, "
    "(array_agg(d ORDER BY occurred_at DESC, n DESC))[1] AS d, bool_or(c) AS done, "
    "max(occurred_at) AS at, (array_agg(occurred_at ORDER BY n))[1] AS first "
    "FROM acc GROUP BY playback_id, user_id, content_id, org), "
    "rows AS (INSERT INTO {vp} AS v (id, user_id, content_id, position_seconds, "
    "duration_seconds, completed, updated_at, created_at) "
    "SELECT playback_id, user_id, content_id, p, d, done, at, first FROM shown "
    "ORDER BY user_id, content_id "
    "ON CONFLICT (user_id, content_id) DO UPDATE SET "
    "position_seconds = CASE WHEN EXCLUDED.updated_at >= v.updated_at "
    "THEN EXCLUDED.position_seconds ELSE v.position_seconds END, "
    "duration_seconds = CASE WHEN EXCLUDED.updated_at >= v.updated_at "
    "THEN EXCLUDED.duration_seconds ELSE v.duration_seconds END, "
    "completed = v.completed OR EXCLUDED.completed, "
    "updated_at = GREATEST(v.updated_at, EXCLUDED.updated_at)), "
    "stamped AS (UPDATE {access} a "
    "SET last_accessed_at = GREATEST(a.last_accessed_at, i.at), "
    "updated_at = GREATEST(a.updated_at, i.at) "
    "FROM shown i WHERE a.organization_id = i.org AND a.user_id = i.user_id "
    "AND a.content_id = i.content_id) "
    "SELECT s.n, s.status, s.key_type, r.position, f.since AS access_since, "
    "f.expires AS access_expires, f.horizon, f.user_live, f.org AS organization_id, "
    "f.log_key, f.legacy "
    "FROM steps s JOIN f ON f.n = s.n LEFT JOIN records r ON r.identity = f.identity "
    "AND s.status = 'accepted' ORDER BY s.n"
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
        "record": sql.SQL(_RECORD).format(**tables),
        "lock": sql.SQL("SELECT pg_advisory_xact_lock(%s)"),
        "keys_of": sql.SQL(
            "SELECT idempotency_key, fingerprint FROM {keys} WHERE idempotency_key = ANY(%s)"
        ).format(**tables),
    }
    return {name: statement.as_bytes() for name, statement in statements.items()}
