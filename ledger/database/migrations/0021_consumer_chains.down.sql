-- The per-chain checkpoints go; each consumer's single checkpoint stays in
-- ledger_consumer_checkpoints, kept up to date in the log's global order by every run.
-- ledger_chain_heads keeps the rows added: a chain's row is never removed.
DROP TABLE ledger_consumer_chains;
