-- scope: log
-- The log's order as state of its own, and each chain's head kept on its lock row
-- (issue 28; docs/stream.md, "Chains and orders"; docs/audit.md, "guards").
--
-- 1. The order. Until now the `organization` order was the global-lock trigger
-- (ledger_events_insert_lock, migration 0008) disabled, which a guard cannot tell from a
-- superuser who disabled it to slip an event past the lock. The order is now the state of
-- ledger_log_order: no row is `global` (every log as migrated, and the safe default), its
-- one row says `organization`. It is written only by the log's owner (`ledger db distribute`,
-- ledger.log.chains.set_order; the writer role may only read it), and the trigger reads it:
-- in the `global` order it takes the log's EXCLUSIVE lock as before, in the `organization`
-- order it takes none (each chain's lock, taken by the chain trigger, orders the chain).
-- Every trigger of the log then stays ENABLE ALWAYS, and a disabled one is always tampering.
--
-- 2. The chain's head on its lock row. The chain trigger locked the chain's row of
-- ledger_chain_heads and then probed the log's (organization_id, position) index for the
-- chain's last event. The row now carries the chain's last position and hash, read and
-- advanced by one UPDATE per event (the row lock, the head and its new value in one
-- statement): no probe of the log. The head is exactly the chain's last event (the trigger
-- is the only writer of an event's position and hash, in the event's own transaction);
-- `ledger audit verify` still walks the log itself, so a head tampered with shows as the
-- next event's broken link.

-- no append runs while the heads are filled and the order is read
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

ALTER TABLE ledger_chain_heads
    ADD COLUMN last_position bigint NOT NULL DEFAULT 0 CHECK (last_position >= 0),
    ADD COLUMN last_hash bytea CHECK (last_hash IS NULL OR length(last_hash) = 32),
    ADD CONSTRAINT ledger_chain_heads_hash_with_position
        CHECK ((last_position = 0) = (last_hash IS NULL));
INSERT INTO ledger_chain_heads (organization_id)
SELECT DISTINCT organization_id FROM ledger_events
    ON CONFLICT (organization_id) DO NOTHING;
UPDATE ledger_chain_heads h
   SET last_position = e.position, last_hash = e.hash
  FROM (SELECT DISTINCT ON (organization_id) organization_id, position, hash
          FROM ledger_events
         ORDER BY organization_id, position DESC) e
 WHERE e.organization_id = h.organization_id;

-- The chain trigger: one UPDATE locks the chain's row, reads its head, computes the event's
-- position and hash from it and stores them as the new head (a row the transaction holds
-- already costs a lookup). A chain's first event makes its row first (or meets the row
-- another append made, and waits for it), then runs the same UPDATE.
CREATE OR REPLACE FUNCTION ledger_events_chain() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    topic_bytes bytea := convert_to(NEW.topic, 'UTF8');
    rest bytea;
BEGIN
    rest := uuid_send(NEW.originator_id)
        || int8send(NEW.originator_version)
        || int4send(length(topic_bytes)) || topic_bytes
        || int4send(length(NEW.state)) || NEW.state
        || int8send((extract(epoch FROM NEW.recorded_at - '2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint);
    LOOP
        UPDATE ledger_chain_heads h
           SET last_position = h.last_position + 1,
               last_hash = sha256(
                   CASE WHEN h.last_position = 0 THEN ledger_chain_genesis(h.organization_id)
                        ELSE h.last_hash END
                   || int8send(h.last_position + 1)
                   || rest)
         WHERE h.organization_id = NEW.organization_id
        RETURNING h.last_position, h.last_hash INTO NEW.position, NEW.hash;
        EXIT WHEN FOUND;
        INSERT INTO ledger_chain_heads (organization_id) VALUES (NEW.organization_id)
            ON CONFLICT (organization_id) DO NOTHING;
    END LOOP;
    RETURN NEW;
END;
$$;
