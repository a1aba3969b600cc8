-- Departures: the catalogue forgets UserLeftOrganization. Refused while the log holds
-- one: an event whose topic the catalogue does not know would not decode.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_events WHERE topic = 'UserLeftOrganization') THEN
        RAISE EXCEPTION 'cannot roll back 0017_departures: the log holds UserLeftOrganization events'
            USING HINT = 'The log is never rewritten; upgrade again to read it.';
    END IF;
END;
$$;
DELETE FROM ledger_event_catalogue WHERE topic = 'UserLeftOrganization';
