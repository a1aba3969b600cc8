-- scope: log
-- The log's order as state of its own (issue 28; docs/stream.md, "Chains and orders";
-- docs/audit.md, "guards").
--
-- Until now the `organization` order was the global-lock trigger (ledger_events_insert_lock,
-- migration 0008) disabled, which a guard cannot tell from a superuser who disabled it to
-- slip an event past the lock. The order is now the state of ledger_log_order: no row is
-- `global` (every log as migrated, and the safe default), its one row says `organization`.
-- It is written only by the log's owner (`ledger db distribute`, ledger.log.chains.set_order;
-- the writer role may only read it), and the trigger reads it: in the `global` order it
-- takes the log's EXCLUSIVE lock as before, in the `organization` order none (each chain's
-- lock, taken by the chain trigger, orders the chain). Every trigger of the log then stays
-- ENABLE ALWAYS, and a disabled one is always tampering.
--
-- The chain trigger is left as 0014 made it (the chain's row locked, its last event one
-- probe of the log's (organization_id, position) index): keeping the head on the locked row
-- instead, updated per event, was measured slower (docs/scaling.md, "The log's order
-- as a row, and the chain's head").

-- no append runs while the order is read and recorded
LOCK TABLE ledger_events IN EXCLUSIVE MODE;

CREATE TABLE ledger_log_order (
    single_row boolean PRIMARY KEY DEFAULT true CHECK (single_row),
    log_order text NOT NULL CHECK (log_order = 'organization'),
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- the order the log had: `organization` exactly when 0008's trigger was disabled
INSERT INTO ledger_log_order (log_order)
SELECT 'organization' FROM pg_trigger t
 WHERE t.tgrelid = 'ledger_events'::regclass AND t.tgname = 'ledger_events_insert_lock'
   AND t.tgenabled = 'D';

CREATE OR REPLACE FUNCTION ledger_events_take_lock() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    -- no row is the global order
    IF NOT EXISTS (SELECT 1 FROM ledger_log_order o WHERE o.log_order = 'organization') THEN
        LOCK TABLE ledger_events IN EXCLUSIVE MODE;
    END IF;
    RETURN NULL;
END;
$$;
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_insert_lock;
