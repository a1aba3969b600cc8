DROP TABLE IF EXISTS ledger_tenant_logins;
DROP TRIGGER IF EXISTS ledger_events_refuse_while_stale ON ledger_events;
DROP FUNCTION IF EXISTS ledger_events_refuse_while_stale();
DROP TABLE IF EXISTS ledger_stale_projections;
DROP TRIGGER IF EXISTS ledger_events_check_shape ON ledger_events;
DROP FUNCTION IF EXISTS ledger_events_check_shape();
DROP TABLE IF EXISTS ledger_event_catalogue;
