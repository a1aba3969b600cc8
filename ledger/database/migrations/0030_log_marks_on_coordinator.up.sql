-- scope: log
-- 0019's read-version check made again, and what the appends of a distributed log must know
-- before their first command kept where the coordinator reads it alone (issue 28,
-- docs/scaling.md "The last single points (i28a)").
--
-- On Citus the function comes first, then the writes, each over one connection per node (as
-- 0026): Citus refuses a function's command after a parallel operation in the transaction.
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
END;
$$;

-- 1. 0019's read-version check (0004's without its correlated subquery over unnest(), which
--    Citus refuses on a distributed log), made again: until now `ledger db downgrade --to base`
--    rolled 0004 back as a projections' migration and the next upgrade made 0004's form again,
--    over 0019's; every append of a distributed log then failed. 0004 is the log's now (the
--    runner: migrations.READ_CHECK_VERSION), and a schema that went through that round trip
--    gets the routable form back here. The same answers, the same index on a single server.
CREATE OR REPLACE FUNCTION ledger_assert_read_versions(ids uuid[], versions bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    stale uuid;
BEGIN
    SELECT r.id INTO stale
      FROM unnest(ids, versions) AS r(id, version)
      LEFT JOIN (SELECT e.originator_id, max(e.originator_version) AS version
                   FROM ledger_events e WHERE e.originator_id = ANY(ids)
                  GROUP BY e.originator_id) m ON m.originator_id = r.id
     WHERE coalesce(m.version, 0) <> r.version
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: aggregate % moved on since it was read', stale
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END;
$$;

-- 2. Whether the log holds chains.LEGACY_TOPICS in the platform's chain (a log written before
--    the chains, then distributed: its appends claim those topics too). It was only the claims'
--    mark, a row of ledger_key_claims (distributed by claim_id), so a process's first command
--    read it on the worker of that row's shard, and a process started while that worker was
--    stopped failed every command of every organization. It is now a column of the order's row
--    (ledger_log_order, a reference table: the coordinator reads its own copy), written by
--    `ledger db distribute` beside the claims; filled here from the claims on a log distributed
--    before (the mark's row itself stays: it is what the claims held).
ALTER TABLE ledger_log_order ADD COLUMN legacy_claims boolean NOT NULL DEFAULT false;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_key_claims
                WHERE claim_id = '00000000-0000-0000-0000-000000000000') THEN
        UPDATE ledger_log_order SET legacy_claims = true;
    END IF;
END;
$$;
