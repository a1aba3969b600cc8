-- scope: log
-- A log migration (kept by `ledger db downgrade --to base`). The claims of keys that are one
-- namespace across the ledger (CONTRACT.md, "Idempotency"): an idempotency key or a refund id
-- (a CommandKey aggregate, uuid5 of the key alone) and a Stripe payment intent (a Purchase
-- aggregate, uuid5 of the intent alone). docs/scaling.md, "The log on Citus", point 4.
--
-- On a single server the log's primary key (originator_id, originator_version) is global: the
-- first event of a key's aggregate is its claim, and this table stays empty (one insert fewer
-- per append, and nothing the primary key does not already hold). On Citus the log's primary
-- key leads with the organization, so two organizations could each create the same key's
-- aggregate in their own chain: there the recorder writes a row here for each such first event,
-- in the append's transaction, and the table is distributed by claim_id itself (not colocated
-- with any organization), so the primary key below lets one append claim a key, whichever
-- organization sent it; a second one fails with a unique violation and is decided again.
CREATE TABLE ledger_key_claims (
    claim_id uuid PRIMARY KEY,          -- the aggregate's id, derived from the key alone
    organization_id uuid NOT NULL,      -- the chain whose events hold the claim
    claimed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
