-- scope: log
-- A log migration (kept by `ledger db downgrade --to base`). The read-version check of 0019,
-- routed to the chains where a distributed log keeps the aggregates read (docs/scaling.md,
-- "The log on Citus", point 2): the append's own chains and the platform's (given), and the
-- chain of each aggregate named by a global key, where its claim says (ledger_key_claims,
-- migration 0025). Filtering by organization_id lets Citus read only those chains' shards
-- instead of every shard of every worker. Used only on a distributed log: a single server
-- keeps 0019's function, whose one index probe per aggregate needs no organization.
CREATE FUNCTION ledger_assert_read_versions_in(ids uuid[], versions bigint[], chains uuid[])
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    stale uuid;
    homes uuid[];
BEGIN
    SELECT chains || coalesce(array_agg(DISTINCT c.organization_id), '{}'::uuid[]) INTO homes
      FROM ledger_key_claims c WHERE c.claim_id = ANY(ids);
    SELECT r.id INTO stale
      FROM unnest(ids, versions) AS r(id, version)
      LEFT JOIN (SELECT e.originator_id, max(e.originator_version) AS version
                   FROM ledger_events e
                  WHERE e.organization_id = ANY(homes) AND e.originator_id = ANY(ids)
                  GROUP BY e.originator_id) m ON m.originator_id = r.id
     WHERE coalesce(m.version, 0) <> r.version
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: aggregate % moved on since it was read', stale
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END;
$$;
