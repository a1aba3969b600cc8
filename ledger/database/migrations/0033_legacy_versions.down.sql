-- 0033 rolled back: the routed read check is 0024's again, and a log written before the
-- chains keeps the platform's chain in every decision's route (the mark gone). It drops
-- what 0033 added and restates 0024's function, so it runs on a distributed schema too:
-- rolls back on citus
-- Each statement by EXECUTE: Citus sends a reference table's DDL to the workers as the
-- text of its statement, which in a file of several statements would be all of them.
DO $do$
BEGIN
    EXECUTE $sql$
CREATE OR REPLACE FUNCTION ledger_assert_read_versions_in(
    ids uuid[], versions bigint[], chains uuid[]
)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    stale uuid;
BEGIN
    SELECT r.id INTO stale
      FROM unnest(ids, versions) AS r(id, version)
      LEFT JOIN (SELECT e.originator_id, max(e.originator_version) AS version
                   FROM ledger_events e
                  WHERE e.organization_id = ANY(chains) AND e.originator_id = ANY(ids)
                  GROUP BY e.originator_id) m ON m.originator_id = r.id
     WHERE coalesce(m.version, 0) <> r.version
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: aggregate % moved on since it was read', stale
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END;
$$
$sql$;
    EXECUTE 'ALTER TABLE ledger_log_order DROP COLUMN legacy_versions';
    EXECUTE 'DROP TABLE ledger_legacy_versions';
END;
$do$;
