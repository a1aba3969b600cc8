-- The store is a source of truth: rolling it back while it holds heartbeats recorded since
-- the upgrade would lose them (the log never saw them), so that is refused.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM playback_heartbeats)
       OR EXISTS (SELECT 1 FROM playback_state WHERE compacted_at IS NOT NULL) THEN
        RAISE EXCEPTION 'the playback store holds heartbeats the log does not have: '
            'rolling back 0011 would lose them';
    END IF;
END;
$$;
DROP TABLE playback_state;
DROP TABLE playback_keys;
DROP TABLE playback_base;
DROP TABLE playback_heartbeats;
DROP SEQUENCE playback_positions;
DROP FUNCTION playback_create_partition(date);
