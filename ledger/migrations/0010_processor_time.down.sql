-- The reader's policy on the log (made by `ledger db roles`) uses the function: it goes
-- first, and the reader reads no event of the log again.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema()
                 AND tablename = 'ledger_events' AND policyname = 'ledger_tenant') THEN
        DROP POLICY ledger_tenant ON ledger_events;
    END IF;
END;
$$;
DROP FUNCTION ledger_event_organization(bytea);
