-- 0028 rolled back: the claims' fence is gone (it drops what 0028 added and puts back
-- nothing, so it runs on a distributed schema too):
-- rolls back on citus
DROP FUNCTION ledger_claim_fence(timestamptz);
