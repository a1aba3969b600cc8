-- scope: log
-- A log migration (kept by `ledger db downgrade --to base`, never run in a rebuild's shadow
-- schema). Consumers of the log (docs/stream.md): where each named consumer stands, and the lock
-- that keeps positions in commit order for every insert, not only the recorder's.

-- A consumer that shares this database advances its row here in the same transaction as
-- its own writes, so the effects of a batch of events and the position after it commit
-- together: a crash between them cannot make it skip an event or handle one twice.
-- IF NOT EXISTS: the rollback keeps the positions of consumers that have handled events
-- (their side effects outlive a downgrade), so a later upgrade finds the table in place.
CREATE TABLE IF NOT EXISTS ledger_consumer_checkpoints (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,99}$'),
    position bigint NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Positions are never overtaken only if every insert takes the log's EXCLUSIVE lock
-- before it draws its first value from the sequence, and keeps it until it commits.
-- The recorder does (LOCK TABLE, then INSERT, in one transaction); this trigger makes
-- the database do it for any other insert too: a BEFORE ... FOR EACH STATEMENT trigger
-- fires before any row is formed, so before the notification_id default (nextval) is
-- evaluated. Taking a lock the transaction already holds costs a lookup.
CREATE FUNCTION ledger_events_take_lock() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    LOCK TABLE ledger_events IN EXCLUSIVE MODE;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_events_insert_lock
    BEFORE INSERT ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_take_lock();
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_insert_lock;
