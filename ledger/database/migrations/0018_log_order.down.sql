-- Back to the order as the trigger's state (0014): the 0008 trigger disabled exactly when
-- the log was in the `organization` order, and taking the global lock whenever it fires.
LOCK TABLE ledger_events IN EXCLUSIVE MODE;

CREATE OR REPLACE FUNCTION ledger_events_take_lock() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    LOCK TABLE ledger_events IN EXCLUSIVE MODE;
    RETURN NULL;
END;
$$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_log_order o WHERE o.log_order = 'organization') THEN
        ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_insert_lock;
    END IF;
END;
$$;
DROP TABLE ledger_log_order;
