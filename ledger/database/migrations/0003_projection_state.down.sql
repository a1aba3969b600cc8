DROP TABLE IF EXISTS ledger_projection_state;
