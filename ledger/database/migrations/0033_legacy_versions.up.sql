-- scope: log
-- A log written before the chains (migration 0014), distributed: where its organizations'
-- aggregates of before the chains end in the platform's chain (issue 28, docs/scaling.md "A
-- log written before the chains"). Such a log keeps every aggregate's events of before the
-- chains in the platform's chain, and each later event in its organization's chain; an
-- aggregate other than a user's never gets another event in the platform's chain (only
-- users' registrations, deletions and erasures go there). So its version there is fixed:
-- `ledger db distribute` writes it here, once, from the events (ledger.database.legacy), and
-- sets the mark on the order's row (a reference table, read on the coordinator) that says
-- the table is filled. This table is a reference table too: a decision asks, on the
-- coordinator, which of the aggregates it reads began before the chains, and reads the
-- platform's chain only for one whose events there it has not read yet; otherwise it reads
-- its organization's chain alone, and a stopped platform worker does not stop it.
CREATE TABLE ledger_legacy_versions (
    aggregate_id uuid PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0)
);
ALTER TABLE ledger_log_order ADD COLUMN legacy_versions boolean NOT NULL DEFAULT false;

-- The routed read check (0024), for an aggregate of before the chains read without the
-- platform's chain: its version there (this table) is its version when the chains read
-- hold none of its events, as they hold every later one. Read on the coordinator first (a
-- reference table), so the check's query reads the chains' shards alone, as before.
CREATE OR REPLACE FUNCTION ledger_assert_read_versions_in(
    ids uuid[], versions bigint[], chains uuid[]
)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    stale uuid;
    old_ids uuid[];
    old_versions bigint[];
BEGIN
    SELECT coalesce(array_agg(l.aggregate_id), '{}'), coalesce(array_agg(l.version), '{}')
      INTO old_ids, old_versions
      FROM ledger_legacy_versions l
     WHERE l.aggregate_id = ANY(ids);
    SELECT r.id INTO stale
      FROM unnest(ids, versions) AS r(id, version)
      LEFT JOIN (SELECT e.originator_id, max(e.originator_version) AS version
                   FROM ledger_events e
                  WHERE e.organization_id = ANY(chains) AND e.originator_id = ANY(ids)
                  GROUP BY e.originator_id) m ON m.originator_id = r.id
      LEFT JOIN unnest(old_ids, old_versions) AS o(id, version) ON o.id = r.id
     WHERE coalesce(m.version, o.version, 0) <> r.version
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: aggregate % moved on since it was read', stale
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END;
$$;
