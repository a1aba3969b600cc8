DROP FUNCTION ledger_assert_read_versions_in(uuid[], bigint[], uuid[]);
