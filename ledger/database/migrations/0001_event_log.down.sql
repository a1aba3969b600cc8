-- The log is the source of truth: its rollback only runs on an empty log.
-- `ledger db downgrade --to base` stops above this migration; only
-- `--to zero` reaches it, and then it refuses while any event is stored.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_events) THEN
        RAISE EXCEPTION 'refusing to drop ledger_events: the log holds events';
    END IF;
END;
$$;

DROP TABLE ledger_events;
DROP FUNCTION ledger_events_chain();
DROP FUNCTION ledger_events_refuse_change();
DROP TYPE stored_event_uuid;
