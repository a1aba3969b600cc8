-- scope: log
-- A log migration (kept by `ledger db downgrade --to base`). The read-version check of 0019,
-- routed to the chains where a distributed log keeps the aggregates read (docs/scaling.md,
-- "The log on Citus", point 2): the append's own chains, the platform's, and those where the
-- decision found an aggregate named by a global key (its claim's, ledger_key_claims, 0023),
-- all given by the recorder. Filtering by organization_id lets Citus read only those chains'
-- shards instead of every shard of every worker. Used only on a distributed log: a single
-- server keeps 0019's function, whose one index probe per aggregate needs no organization.
CREATE FUNCTION ledger_assert_read_versions_in(ids uuid[], versions bigint[], chains uuid[])
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
$$;
