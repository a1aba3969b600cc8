-- scope: log
-- A log migration (kept by `ledger db downgrade --to base`). Consumers keep one checkpoint per
-- chain (docs/stream.md, "Consumers with a durable checkpoint"): in the log's `organization`
-- order notification_id is no order across chains, each chain's position is.

-- Where each consumer stands in each chain: the chain's position of the last event it has
-- handled (or passed over: topics it does not read). A chain without a row stands at 0. The
-- rows move in the same transaction as the consumer's own writes, under the lock of its row
-- of ledger_consumer_checkpoints (still one per consumer: its lock, and its position in the
-- log's global order, kept for the readers of that order).
CREATE TABLE ledger_consumer_chains (
    name text NOT NULL,
    organization_id uuid NOT NULL,
    position bigint NOT NULL CHECK (position > 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, organization_id)
);

-- An existing consumer's single checkpoint carries over: in the global order (every log's
-- until migration 0014's switch, and the only order a consumer of notification_id was kept
-- to) the events up to it are, in each chain, a prefix of that chain, so each chain's
-- position is that of its last event at or below the checkpoint. Exact, and verified by
-- tests/integration/test_consumer_chains.py.
INSERT INTO ledger_consumer_chains (name, organization_id, position)
SELECT c.name, e.organization_id, max(e.position)
FROM ledger_consumer_checkpoints c
JOIN ledger_events e ON e.notification_id <= c.position
GROUP BY c.name, e.organization_id;

-- Every chain of the log has its row in ledger_chain_heads, where a reader of every chain
-- finds the chains: a log migrated by 0014 holds the old events in the platform's chain
-- without one until its next append.
INSERT INTO ledger_chain_heads (organization_id)
SELECT DISTINCT organization_id FROM ledger_events
ON CONFLICT (organization_id) DO NOTHING;
