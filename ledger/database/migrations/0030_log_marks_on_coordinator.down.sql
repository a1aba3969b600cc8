-- 0030 rolled back: the claims' mark is read from the claims again (ledger.database.legacy).
-- The read-version check stays 0019's form, which 0030 only restated. It drops what 0030
-- added and puts back nothing, so it runs on a distributed schema too:
-- rolls back on citus
ALTER TABLE ledger_log_order DROP COLUMN legacy_claims;
