-- scope: log
-- A group of heartbeats decided and written by one call (issue 26, docs/performance.md): the
-- playback store's writer sends `SELECT * FROM playback_record(group, lock)` in autocommit,
-- one round trip and one statement a group, where a pipeline of BEGIN, the lock, the
-- statement and COMMIT cost the client about three times the CPU (0.41-0.50 against 0.15 ms a
-- group, measured side by side).
--
-- The stream's advisory lock is taken first, by a statement of its own: the decision's query
-- then takes its snapshot (a volatile function's statements each take one) once the lock is
-- held, so it sees every group committed before it, and positions commit in order.
--
-- The decision is the rules of ledger/playback/decide.py (the specification: the property
-- tests/property/test_playback_sql_decision.py holds the two equal for all groups), written
-- once in playback_decision below. A heartbeat whose key and identity occur once in the group
-- is decided on the facts alone; the ones sharing a key or an identity with another are walked
-- in the group's order (a recursive CTE over those alone, so a group of distinct heartbeats
-- costs no more than its size), each on what the ones before it accepted: `keys` (key to
-- fingerprint) and `ids`. `lookup`: the money log must be asked first (the caller asks it and
-- binds its answers in the group's `*_asked`, `log_*` and `legacy_seen`); `partition`: the
-- day's partition is missing. Either writes nothing, and the caller decides the group again.
--
-- The group, one JSON row per heartbeat in its order (n): its user, content, time, identity,
-- key and fingerprint, the command key's and the playback's aggregate ids in the log, its
-- position, duration, completed, and its day's partition (quoted, for to_regclass).
-- One heartbeat's decision, the checks in decide._check's order: the key (`used`: the
-- fingerprint it was used with before, in the group, the store or the log; `from_log`: the
-- log's), the user, the content, the same heartbeat stored or accepted before (`seen`), the
-- horizon, the access rule (ledger.domain.access.check_playable: a row, begun at or before the
-- heartbeat, not expired at it), the day's partition. `log_conflict`: a conflict with the
-- key of a money command (the caller names its type).
CREATE FUNCTION playback_decision(
    key text, fp text, used text, from_log boolean, log_key boolean, log_asked boolean,
    user_live boolean, user_asked boolean, org uuid, content_asked boolean, seen boolean,
    legacy boolean, legacy_asked boolean, at timestamptz, horizon timestamptz,
    since timestamptz, expires timestamptz, part text
) RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT CASE
        WHEN key IS NOT NULL AND used IS NOT NULL THEN
            CASE WHEN used = fp THEN 'duplicate'
                 WHEN from_log THEN 'log_conflict'
                 ELSE 'conflict' END
        WHEN key IS NOT NULL AND log_key AND log_asked IS NULL THEN 'lookup'
        WHEN NOT user_live THEN CASE WHEN user_asked THEN 'no_user' ELSE 'lookup' END
        WHEN org IS NULL THEN CASE WHEN content_asked THEN 'no_content' ELSE 'lookup' END
        WHEN seen THEN 'duplicate'
        WHEN legacy AND legacy_asked IS NULL THEN 'lookup'
        WHEN at < horizon THEN 'horizon'
        WHEN since IS NULL OR at < since OR expires <= at THEN 'no_access'
        WHEN to_regclass(part) IS NULL THEN 'partition'
        ELSE 'accepted'
    END
$$;

CREATE FUNCTION playback_record(grp json, stream_lock bigint)
RETURNS TABLE (
    n int, status text, "position" bigint, access_since timestamptz,
    access_expires timestamptz, horizon timestamptz, user_live boolean,
    organization_id uuid, log_key boolean, legacy boolean
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(stream_lock);
    RETURN QUERY
    WITH RECURSIVE f AS MATERIALIZED (
        SELECT i.*, u.live IS NOT NULL AS user_live, c.organization_id AS org,
               a.created_at AS since, a.expires_at AS expires, b.horizon,
               h.seen IS NOT NULL AS seen, k.fingerprint AS store_fp,
               (k.fingerprint IS NULL AND ek.found IS NOT NULL) AS log_key,
               el.found IS NOT NULL AS legacy,
               count(*) OVER (PARTITION BY i.key) > 1 AND i.key IS NOT NULL AS shared_key,
               count(*) OVER (PARTITION BY i.identity) > 1 AS shared_id
        FROM json_to_recordset(grp) AS i(
            n int, user_id text, content_id uuid, occurred_at timestamptz, identity text,
            key text, fp text, key_id uuid, playback_id uuid, p int, d int, c bool, part text,
            user_asked bool, content_asked bool, log_asked bool, log_fp text, log_type text,
            legacy_asked bool, legacy_seen bool)
        -- each fact a one-row index probe (LIMIT 1), whatever the tables' statistics
        LEFT JOIN LATERAL (SELECT true AS live FROM users u
                           WHERE u.id = i.user_id LIMIT 1) u ON true
        LEFT JOIN LATERAL (SELECT c.organization_id FROM content c
                           WHERE c.id = i.content_id LIMIT 1) c ON true
        LEFT JOIN LATERAL (SELECT a.created_at, a.expires_at FROM content_access a
                           WHERE a.organization_id = c.organization_id
                             AND a.user_id = i.user_id AND a.content_id = i.content_id
                           LIMIT 1) a ON true
        LEFT JOIN LATERAL (SELECT b.horizon FROM playback_base b
                           WHERE b.user_id = i.user_id AND b.content_id = i.content_id
                           LIMIT 1) b ON true
        LEFT JOIN LATERAL (SELECT true AS seen FROM playback_heartbeats h
                           WHERE h.identity = i.identity AND h.occurred_at = i.occurred_at
                           LIMIT 1) h ON true
        LEFT JOIN LATERAL (SELECT k.fingerprint FROM playback_keys k
                           WHERE k.idempotency_key = i.key LIMIT 1) k ON true
        LEFT JOIN LATERAL (SELECT true AS found FROM ledger_events e
                           WHERE e.originator_id = i.key_id LIMIT 1) ek ON true
        LEFT JOIN LATERAL (SELECT true AS found FROM ledger_events e
                           WHERE e.originator_id = i.playback_id LIMIT 1) el ON true
    ), walked AS MATERIALIZED (
        SELECT f.*, row_number() OVER (ORDER BY f.n) AS m
        FROM f WHERE f.shared_key OR f.shared_id
    ), walk AS (
        SELECT 0::bigint AS m, NULL::int AS n, NULL::text AS status,
               '{}'::jsonb AS keys, '{}'::text[] AS ids
        UNION ALL
        SELECT t.m, t.n, x.status,
               CASE WHEN x.status = 'accepted' AND t.key IS NOT NULL
                    THEN w.keys || jsonb_build_object(t.key, t.fp) ELSE w.keys END,
               CASE WHEN x.status = 'accepted' THEN w.ids || t.identity ELSE w.ids END
        FROM walk w
        JOIN walked t ON t.m = w.m + 1
        CROSS JOIN LATERAL (
            SELECT playback_decision(
                t.key, t.fp, coalesce(w.keys ->> t.key, t.store_fp, t.log_fp),
                w.keys ->> t.key IS NULL AND t.store_fp IS NULL AND t.log_fp IS NOT NULL,
                t.log_key, t.log_asked, t.user_live, t.user_asked, t.org, t.content_asked,
                t.seen OR t.identity = ANY(w.ids) OR coalesce(t.legacy_seen, false),
                t.legacy, t.legacy_asked, t.occurred_at, t.horizon, t.since, t.expires, t.part
            ) AS status
        ) x
    ), steps AS MATERIALIZED (
        SELECT f.n, coalesce(w.status, playback_decision(
            f.key, f.fp, coalesce(f.store_fp, f.log_fp),
            f.store_fp IS NULL AND f.log_fp IS NOT NULL,
            f.log_key, f.log_asked, f.user_live, f.user_asked, f.org, f.content_asked,
            f.seen OR coalesce(f.legacy_seen, false),
            f.legacy, f.legacy_asked, f.occurred_at, f.horizon, f.since, f.expires, f.part
        )) AS status
        FROM f LEFT JOIN walk w ON w.n = f.n
    ), acc AS MATERIALIZED (
        SELECT f.* FROM steps s JOIN f ON f.n = s.n
        WHERE s.status = 'accepted'
          AND NOT EXISTS (SELECT 1 FROM steps w WHERE w.status IN ('lookup', 'partition'))
    ), keys AS (
        INSERT INTO playback_keys (idempotency_key, fingerprint)
        SELECT key, fp FROM acc WHERE key IS NOT NULL
    ), records AS (
        -- positions drawn in the group's order, under the lock
        INSERT INTO playback_heartbeats (identity, occurred_at, user_id, content_id,
            organization_id, position_seconds, duration_seconds, completed, idempotency_key)
        SELECT identity, occurred_at, user_id, content_id, org, p, d, c, key FROM acc
        ORDER BY n
        RETURNING identity, "position"
    ), shown AS MATERIALIZED (
        -- per (user, content): the newest heartbeat (the later on a tie), any completed,
        -- the first one's time (a new row's created_at), as decide.newest
        SELECT playback_id, user_id, content_id, org,
               (array_agg(p ORDER BY occurred_at DESC, n DESC))[1] AS p,
               (array_agg(d ORDER BY occurred_at DESC, n DESC))[1] AS d,
               bool_or(c) AS done, max(occurred_at) AS at,
               (array_agg(occurred_at ORDER BY n))[1] AS first
        FROM acc GROUP BY playback_id, user_id, content_id, org
    ), shown_rows AS (
        -- the guarded upsert: the newest occurred_at wins, completed only turns true
        INSERT INTO video_playback AS v (id, user_id, content_id, position_seconds,
            duration_seconds, completed, updated_at, created_at)
        SELECT playback_id, user_id, content_id, p, d, done, at, first FROM shown
        ORDER BY user_id, content_id
        ON CONFLICT (user_id, content_id) DO UPDATE SET
            position_seconds = CASE WHEN EXCLUDED.updated_at >= v.updated_at
                THEN EXCLUDED.position_seconds ELSE v.position_seconds END,
            duration_seconds = CASE WHEN EXCLUDED.updated_at >= v.updated_at
                THEN EXCLUDED.duration_seconds ELSE v.duration_seconds END,
            completed = v.completed OR EXCLUDED.completed,
            updated_at = GREATEST(v.updated_at, EXCLUDED.updated_at)
    ), stamped AS (
        UPDATE content_access a
        SET last_accessed_at = GREATEST(a.last_accessed_at, i.at),
            updated_at = GREATEST(a.updated_at, i.at)
        FROM shown i
        WHERE a.organization_id = i.org AND a.user_id = i.user_id
          AND a.content_id = i.content_id
    )
    SELECT s.n, s.status, r."position", f.since, f.expires, f.horizon,
           f.user_live, f.org, f.log_key, f.legacy
    FROM steps s
    JOIN f ON f.n = s.n
    LEFT JOIN records r ON r.identity = f.identity AND s.status = 'accepted'
    ORDER BY s.n;
END;
$$;
