-- scope: log
-- Two groups of heartbeats in flight on one server (issue 26, docs/stream.md "The playback
-- store's stream", docs/performance.md). Until now `playback_record` took the stream's
-- advisory lock exclusively and held it to the commit, so positions committed in their order
-- and a reader resuming after a position missed none; it also made every heartbeat writer
-- wait for the group before it, commit included. Now a group holds that lock SHARED (writers
-- overlap; an erasure, which takes it exclusively, still waits for every group in flight),
-- and before it draws positions it publishes, in a second shared advisory lock held to its
-- commit, the sequence's last value: its positions are all above it. Positions may now
-- commit out of order; the reader (`ledger playback events`, GET /v1/playback/events) reads
-- only up to the lowest value published by a group still in flight (and no further than the
-- highest position it sees committed), which is a prefix of the committed records in
-- position order: it never skips one and never returns one twice. A rolled-back group leaves
-- a gap in positions, as it always could (a sequence does not roll back).
-- Only the function changes (no table, no data): it runs on Citus too, where the store's
-- distributed layout never calls it (each organization's head row, migration 0027).
CREATE OR REPLACE FUNCTION playback_record(grp json, stream_lock bigint)
RETURNS TABLE (
    n int, status text, "position" bigint, access_since timestamptz,
    access_expires timestamptz, horizon timestamptz, user_live boolean,
    organization_id uuid, log_key boolean, legacy boolean
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    published bigint;
BEGIN
    -- Shared, held to the commit: an erasure (``ERASING_LOCK``) takes it exclusively and so
    -- sees every group committed before its DELETE; writers no longer exclude each other.
    PERFORM pg_advisory_xact_lock_shared(stream_lock);
    -- Published before any position is drawn, held to the commit: "this group may draw
    -- positions above v", v the sequence's last value now. A reader of the stream takes no
    -- record above the lowest v of a group still in flight (ledger/playback/stream.py), so
    -- what it returns is a prefix of the committed records in position order. The key: the
    -- sequence's oid (one store per schema) and v's low 32 bits, as signed int4s.
    published := coalesce(pg_sequence_last_value('playback_positions'::regclass), 0);
    PERFORM pg_advisory_xact_lock_shared(
        ((('playback_positions'::regclass::oid::bigint + 2147483648) % 4294967296)
            - 2147483648)::int,
        (((published % 4294967296) + 2147483648) % 4294967296 - 2147483648)::int);
    IF (grp -> 0 ->> 'distinct') IS NULL THEN
        -- 0022's walked form: heartbeats decided in order, each on those before it
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
                               WHERE b.organization_id = c.organization_id
                                 AND b.user_id = i.user_id AND b.content_id = i.content_id
                               LIMIT 1) b ON true
            LEFT JOIN LATERAL (SELECT true AS seen FROM playback_heartbeats h
                               WHERE h.organization_id = c.organization_id
                                 AND h.identity = i.identity AND h.occurred_at = i.occurred_at
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
            -- positions drawn in the group's order, each above `published`
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
            INSERT INTO video_playback AS v (id, user_id, content_id, organization_id,
                position_seconds, duration_seconds, completed, updated_at, created_at)
            SELECT playback_id, user_id, content_id, org, p, d, done, at, first FROM shown
            ORDER BY user_id, content_id
            ON CONFLICT (organization_id, user_id, content_id) DO UPDATE SET
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
        RETURN;
    END IF;
    RETURN QUERY
    WITH f AS MATERIALIZED (
        -- the facts and the decision in one pass: no heartbeat waits on another's answer
        SELECT i.*, u.live IS NOT NULL AS user_live, c.organization_id AS org,
               a.created_at AS since, a.expires_at AS expires, b.horizon,
               (k.fingerprint IS NULL AND ek.found IS NOT NULL) AS log_key,
               el.found IS NOT NULL AS legacy,
               playback_decision(
                   i.key, i.fp, coalesce(k.fingerprint, i.log_fp),
                   k.fingerprint IS NULL AND i.log_fp IS NOT NULL,
                   k.fingerprint IS NULL AND ek.found IS NOT NULL, i.log_asked,
                   u.live IS NOT NULL, i.user_asked, c.organization_id, i.content_asked,
                   h.seen IS NOT NULL OR coalesce(i.legacy_seen, false),
                   el.found IS NOT NULL, i.legacy_asked, i.occurred_at, b.horizon,
                   a.created_at, a.expires_at, i.part
               ) AS status
        FROM json_to_recordset(grp) AS i(
            n int, user_id text, content_id uuid, occurred_at timestamptz, identity text,
            key text, fp text, key_id uuid, playback_id uuid, p int, d int, c bool, part text,
            user_asked bool, content_asked bool, log_asked bool, log_fp text, log_type text,
            legacy_asked bool, legacy_seen bool)
        -- each fact a one-row index probe (LIMIT 1), as in the walked form
        LEFT JOIN LATERAL (SELECT true AS live FROM users u
                           WHERE u.id = i.user_id LIMIT 1) u ON true
        LEFT JOIN LATERAL (SELECT c.organization_id FROM content c
                           WHERE c.id = i.content_id LIMIT 1) c ON true
        LEFT JOIN LATERAL (SELECT a.created_at, a.expires_at FROM content_access a
                           WHERE a.organization_id = c.organization_id
                             AND a.user_id = i.user_id AND a.content_id = i.content_id
                           LIMIT 1) a ON true
        LEFT JOIN LATERAL (SELECT b.horizon FROM playback_base b
                           WHERE b.organization_id = c.organization_id
                             AND b.user_id = i.user_id AND b.content_id = i.content_id
                           LIMIT 1) b ON true
        LEFT JOIN LATERAL (SELECT true AS seen FROM playback_heartbeats h
                           WHERE h.organization_id = c.organization_id
                             AND h.identity = i.identity AND h.occurred_at = i.occurred_at
                           LIMIT 1) h ON true
        LEFT JOIN LATERAL (SELECT k.fingerprint FROM playback_keys k
                           WHERE k.idempotency_key = i.key LIMIT 1) k ON true
        LEFT JOIN LATERAL (SELECT true AS found FROM ledger_events e
                           WHERE e.originator_id = i.key_id LIMIT 1) ek ON true
        LEFT JOIN LATERAL (SELECT true AS found FROM ledger_events e
                           WHERE e.originator_id = i.playback_id LIMIT 1) el ON true
    ), acc AS MATERIALIZED (
        SELECT * FROM f
        WHERE f.status = 'accepted'
          AND NOT EXISTS (SELECT 1 FROM f w WHERE w.status IN ('lookup', 'partition'))
    ), keys AS (
        INSERT INTO playback_keys (idempotency_key, fingerprint)
        SELECT key, fp FROM acc WHERE key IS NOT NULL
    ), records AS (
        -- positions drawn in the group's order, each above `published`
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
        INSERT INTO video_playback AS v (id, user_id, content_id, organization_id,
            position_seconds, duration_seconds, completed, updated_at, created_at)
        SELECT playback_id, user_id, content_id, org, p, d, done, at, first FROM shown
        ORDER BY user_id, content_id
        ON CONFLICT (organization_id, user_id, content_id) DO UPDATE SET
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
    SELECT f.n, f.status, r."position", f.since, f.expires, f.horizon,
           f.user_live, f.org, f.log_key, f.legacy
    FROM f
    LEFT JOIN records r ON r.identity = f.identity AND f.status = 'accepted'
    ORDER BY f.n;
END;
$$;
