-- 0034 rolled back: the keys' claims hold no moment again (in one DO block: Citus sends a
-- propagated command's text to every node). It drops what 0034 added and puts back
-- nothing, so it runs on a distributed schema too:
-- rolls back on citus
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        -- one connection per node, as 0026: the rollbacks that follow in the same
        -- transaction replace a function (0029's), which Citus refuses after a parallel
        -- operation on a distributed table
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    ALTER TABLE playback_keys DROP COLUMN occurred_at;
END
$$;
