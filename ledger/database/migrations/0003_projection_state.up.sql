-- Where each projection stands. Projections are applied inline, in the append's own
-- transaction, so a live table is always at the log's head; this table records what
-- `ledger projections rebuild` did last (up to which position, when), for
-- `ledger projections status`.
CREATE TABLE ledger_projection_state (
    name text PRIMARY KEY,
    rebuilt_position bigint NOT NULL,
    rebuilt_at timestamptz NOT NULL,
    rebuild_seconds double precision NOT NULL,
    switch_lock_ms double precision NOT NULL
);
