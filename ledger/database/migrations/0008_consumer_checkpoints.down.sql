DROP TRIGGER IF EXISTS ledger_events_insert_lock ON ledger_events;
DROP FUNCTION IF EXISTS ledger_events_take_lock();
-- A consumer past position 0 has had side effects outside the log; forgetting its
-- position would make it do them again after the next upgrade, so the table stays.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_consumer_checkpoints WHERE position > 0) THEN
        RAISE NOTICE 'ledger_consumer_checkpoints kept: consumers have positions';
    ELSE
        DROP TABLE ledger_consumer_checkpoints;
    END IF;
END;
$$;
