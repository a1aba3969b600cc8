-- scope: log
-- A heartbeat's key claim holds the moment of the heartbeat that claimed it (issue 28,
-- docs/scaling.md "The playback store on Citus"). On the distributed layout the keys are
-- claimed in transactions of their own before their group's (ledger.playback.keys), and a
-- heartbeat without occurred_at is dated when it is identified: each delivery of its key
-- had its own identity, so every redelivery was recorded again. Every delivery of a key
-- held with its fingerprint now takes this moment, and is one heartbeat.
-- The keys of before are given the moment of their recorded heartbeat (the first, if the
-- bug recorded several), one scan of the store's records; a key whose heartbeat is not
-- there (compacted, or a claim whose group never committed) keeps none, and its deliveries
-- are decided as before. Nullable: a single server's statement (playback_record), which
-- writes its keys in its group's transaction, never needs it and leaves it null (`ledger
-- db distribute` fills its keys' moments so, before it places them). ALTER TABLE ... ADD
-- COLUMN is propagated to every shard of a distributed playback_keys by Citus, over one
-- connection per node (as 0026): a migration that follows in the same transaction may
-- replace a function, which Citus refuses after a parallel operation on a distributed
-- table.
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    ALTER TABLE playback_keys ADD COLUMN occurred_at timestamptz;
    UPDATE playback_keys k SET occurred_at = h.first
      FROM (SELECT idempotency_key, min(occurred_at) AS first FROM playback_heartbeats
             WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key) h
     WHERE k.idempotency_key = h.idempotency_key;
END
$$;
