-- 0035 rolled back: the keys' claims hold no owner again, and an erasure no longer finds a
-- claim whose group never committed (docs/privacy.md, "Races"). In one DO block (Citus sends
-- a propagated command's text to every node); it drops what 0035 added and puts back
-- nothing, so it runs on a distributed schema too:
-- rolls back on citus
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    ALTER TABLE playback_keys DROP COLUMN user_id;
END
$$;
