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
-- tests/property/test_playback_sql_decision.py holds the two equal for all groups), heartbeat
-- by heartbeat in the group's order (a recursive walk), each on what the ones before it
-- accepted: `keys` (key to fingerprint) and `ids` carry only the keys and identities that
-- occur twice in the group (`shared_key`, `shared_id`), so the common group carries nothing.
-- The checks in decide._check's order: the key (the group's, the store's, the log's), the
-- user, the content, the same heartbeat stored or accepted before, the horizon, the access
-- rule (ledger.domain.access.check_playable: a row, begun at or before the heartbeat, not
-- expired at it). `lookup`: the money log must be asked first (the caller asks it and binds
-- its answers in the group's `*_asked`, `log_*` and `legacy_seen`); `partition`: the day's
-- partition is missing. Either writes nothing, and the caller decides the group again.
--
-- The group, one JSON row per heartbeat in its order (n): its user, content, time, identity,
-- key and fingerprint, the command key's and the playback's aggregate ids in the log, its
-- position, duration, completed, and its day's partition (quoted, for to_regclass).
CREATE FUNCTION playback_record(grp json, stream_lock bigint)
RETURNS TABLE (
    n int, status text, key_type text, "position" bigint, access_since timestamptz,
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
    ), steps AS (
        SELECT -1 AS n, NULL::text AS status, NULL::text AS key_type,
               '{}'::jsonb AS keys, '{}'::text[] AS ids
        UNION ALL
        SELECT f.n, x.status, k.key_type,
               CASE WHEN x.status = 'accepted' AND f.shared_key
                    THEN s.keys || jsonb_build_object(f.key, f.fp) ELSE s.keys END,
               CASE WHEN x.status = 'accepted' AND f.shared_id
                    THEN s.ids || f.identity ELSE s.ids END
        FROM steps s
        JOIN f ON f.n = s.n + 1
        CROSS JOIN LATERAL (
            SELECT coalesce(s.keys ->> f.key, f.store_fp, f.log_fp) AS used,
                   CASE WHEN f.store_fp IS NULL AND f.log_fp IS NOT NULL
                             AND NOT (s.keys ? f.key)
                        THEN f.log_type ELSE 'playback.progress' END AS key_type
        ) k
        CROSS JOIN LATERAL (
            SELECT CASE
                WHEN f.key IS NOT NULL AND k.used IS NOT NULL
                    THEN CASE WHEN k.used = f.fp THEN 'duplicate' ELSE 'conflict' END
                WHEN f.key IS NOT NULL AND f.log_key AND f.log_asked IS NULL THEN 'lookup'
                WHEN NOT f.user_live
                    THEN CASE WHEN f.user_asked THEN 'no_user' ELSE 'lookup' END
                WHEN f.org IS NULL
                    THEN CASE WHEN f.content_asked THEN 'no_content' ELSE 'lookup' END
                WHEN f.seen OR f.identity = ANY(s.ids) OR f.legacy_seen THEN 'duplicate'
                WHEN f.legacy AND f.legacy_asked IS NULL THEN 'lookup'
                WHEN f.occurred_at < f.horizon THEN 'horizon'
                WHEN f.since IS NULL OR f.occurred_at < f.since OR f.expires <= f.occurred_at
                    THEN 'no_access'
                WHEN to_regclass(f.part) IS NULL THEN 'partition'
                ELSE 'accepted'
            END AS status
        ) x
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
    SELECT s.n, s.status, s.key_type, r."position", f.since, f.expires, f.horizon,
           f.user_live, f.org, f.log_key, f.legacy
    FROM steps s
    JOIN f ON f.n = s.n
    LEFT JOIN records r ON r.identity = f.identity AND s.status = 'accepted'
    ORDER BY s.n;
END;
$$;
