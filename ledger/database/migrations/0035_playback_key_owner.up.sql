-- scope: log
-- Whose each key's claim is (docs/privacy.md, "Races"; docs/scaling.md "The playback store on
-- Citus"). On the distributed layout a keyed heartbeat claims its key in a transaction of its
-- own before its group's (ledger.playback.keys): a process killed between the two left the
-- claim, its key and the digest of a payload naming the person, which no heartbeat names, so
-- no erasure found it. The claim now holds the person (the store names people by id, as its
-- heartbeats and playback_compacted_keys do), and `user.erase` deletes the person's claims by
-- it, in the erasure's transaction (ledger.privacy.store). Nullable: a single server's
-- statement (playback_record) writes its keys with their heartbeats, which name the person,
-- and leaves it null; so do the keys of before, found by their heartbeats or their compacted
-- owners as before. A claim of before whose group never committed carries no owner
-- (docs/privacy.md says what is left). ADD COLUMN and CREATE INDEX are propagated to every
-- shard of a distributed playback_keys by Citus, over one connection per node (as 0034).
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    ALTER TABLE playback_keys ADD COLUMN user_id text;
    -- the erasure's probe of the person's claims
    CREATE INDEX playback_keys_user ON playback_keys (user_id);
END
$$;
