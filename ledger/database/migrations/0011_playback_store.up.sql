-- scope: log
-- The playback store (issue 26, docs/events.md "The playback store"): heartbeats beside the
-- money log, not in it. A source of truth like the log (a rebuild folds video_playback from
-- it), so it belongs to the log's scope: kept by `downgrade --to base`, never run in a shadow.

-- Every heartbeat still retained, partitioned by its business time so that retention drops
-- whole partitions (`ledger playback compact`): its cost grows with what it removes.
-- Partitions (one per UTC day, playback_heartbeats_pYYYYMMDD) are created on demand by the
-- writer. PostgreSQL wants a partitioned table's unique keys to hold the partition key: the
-- heartbeat's identity (its payload at its moment, which holds occurred_at) with occurred_at
-- is exactly "the same heartbeat again", so it is the primary key.
CREATE SEQUENCE playback_positions AS bigint;
CREATE TABLE playback_heartbeats (
    position bigint NOT NULL DEFAULT nextval('playback_positions'),
    identity text NOT NULL,
    occurred_at timestamptz NOT NULL,
    user_id text NOT NULL,
    content_id uuid NOT NULL,
    organization_id uuid NOT NULL,
    position_seconds integer NOT NULL CHECK (position_seconds >= 0),
    duration_seconds integer NOT NULL CHECK (duration_seconds >= 1),
    completed boolean NOT NULL,
    idempotency_key text,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (identity, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- A day's partition, created on demand by the writer (ledger/playback/partitions.py). Only the
-- parent's owner may attach a partition, so the writer asks this function, which runs as its
-- owner (`ledger db roles` gives it to the owner role and lets the writer execute it).
CREATE FUNCTION playback_create_partition(day date) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
DECLARE
    part text := 'playback_heartbeats_p' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(quote_ident(part)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF playback_heartbeats FOR VALUES FROM (%L) TO (%L)',
        part,
        (day::timestamp AT TIME ZONE 'UTC'),
        ((day + 1)::timestamp AT TIME ZONE 'UTC')
    );
END;
$$;
-- the stream (`ledger playback events --after P`) reads in position order
CREATE INDEX playback_heartbeats_position ON playback_heartbeats (position);
CREATE INDEX playback_heartbeats_user_content ON playback_heartbeats (user_id, content_id);

-- Compacted heartbeats: at most one row per (user, content), what video_playback and the
-- completed rule need of everything before `horizon`. A heartbeat of this (user, content)
-- dated before `horizon` is refused (`invalid_state`): its identity may have been dropped,
-- so a redelivery could not be told from a new one.
CREATE TABLE playback_base (
    user_id text NOT NULL,
    content_id uuid NOT NULL,
    organization_id uuid NOT NULL,
    position_seconds integer NOT NULL,
    duration_seconds integer NOT NULL,
    completed boolean NOT NULL,
    occurred_at timestamptz NOT NULL, -- the newest heartbeat folded in
    shown_position bigint NOT NULL, -- its position (the later wins a tie of occurred_at)
    first_at timestamptz NOT NULL, -- the first one recorded (video_playback.created_at)
    first_position bigint NOT NULL, -- its position (0: recorded in the log, before the store)
    horizon timestamptz NOT NULL,
    PRIMARY KEY (user_id, content_id)
);

-- Idempotency keys of heartbeats: the same key again is `duplicate` (same payload) or
-- `conflict`. Kept for ever, like the log's: a key is small and never dated.
CREATE TABLE playback_keys (
    idempotency_key text PRIMARY KEY,
    fingerprint text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row: how far compaction has gone (reported by `ledger playback status`).
CREATE TABLE playback_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    compacted_before timestamptz,
    compacted_at timestamptz
);
INSERT INTO playback_state DEFAULT VALUES;

-- An existing ledger's heartbeats stay in the log (it is immutable); their newest state,
-- which video_playback holds now (updated_at is the shown heartbeat's occurred_at, the
-- newest), is carried into the base once. The log's heartbeats of a (user, content) are all
-- dated at or before that, so the horizon just after it makes their redelivery refused,
-- never counted twice; rebuilds fold video_playback from the store only.
INSERT INTO playback_base
    (user_id, content_id, organization_id, position_seconds, duration_seconds, completed,
     occurred_at, shown_position, first_at, first_position, horizon)
SELECT v.user_id, v.content_id, c.organization_id, v.position_seconds, v.duration_seconds,
       v.completed, v.updated_at, 0, v.created_at, 0, v.updated_at + interval '1 microsecond'
FROM video_playback v
JOIN content c ON c.id = v.content_id;
