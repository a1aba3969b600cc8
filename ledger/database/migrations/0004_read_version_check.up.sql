-- The append's guard against stale reads: the aggregates a decision only read must
-- still be at the versions it read. Called inside the append's transaction, after the
-- recorder's EXCLUSIVE lock, queued in the same pipeline as the insert, so a stale read
-- fails the transaction without an extra round trip. The error is an integrity
-- violation: the service reloads and decides again.
CREATE FUNCTION ledger_assert_read_versions(ids uuid[], versions bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    stale uuid;
BEGIN
    SELECT r.id INTO stale
      FROM unnest(ids, versions) AS r(id, version)
     WHERE coalesce((SELECT max(e.originator_version) FROM ledger_events e
                      WHERE e.originator_id = r.id), 0) <> r.version
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: aggregate % moved on since it was read', stale
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END;
$$;
