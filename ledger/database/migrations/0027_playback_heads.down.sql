-- 0027 rolled back: the store's positions are the coordinator's sequence alone again (in one
-- DO block: Citus sends a propagated command's text to every node). It drops what 0027
-- added and puts back nothing, so it runs on a distributed schema too:
-- rolls back on citus
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        -- one connection per node, as 0026: a migration that follows in the same
        -- transaction may touch a table with a foreign key to a reference table
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    DROP INDEX IF EXISTS playback_heartbeats_organization_position;
    DROP TABLE IF EXISTS playback_heads;
END
$$;
