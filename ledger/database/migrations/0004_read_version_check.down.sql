DROP FUNCTION IF EXISTS ledger_assert_read_versions(uuid[], bigint[]);
