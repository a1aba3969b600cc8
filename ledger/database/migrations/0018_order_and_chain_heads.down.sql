-- Back to the order as the trigger's state and the head probed in the log (0014): the
-- 0008 trigger disabled exactly when the log was in the `organization` order.
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

CREATE OR REPLACE FUNCTION ledger_events_chain() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    previous bytea;
    last_position bigint;
    topic_bytes bytea := convert_to(NEW.topic, 'UTF8');
BEGIN
    LOOP
        -- one statement: the chain's row locked, and its last event beside it
        SELECT e.position, e.hash INTO last_position, previous
          FROM ledger_chain_heads h
          LEFT JOIN LATERAL (
                SELECT l.position, l.hash FROM ledger_events l
                 WHERE l.organization_id = h.organization_id
                 ORDER BY l.position DESC LIMIT 1) e ON true
         WHERE h.organization_id = NEW.organization_id
           FOR UPDATE OF h;
        EXIT WHEN FOUND;
        -- the chain's first event: its row made (or met, made by another), then locked
        INSERT INTO ledger_chain_heads (organization_id) VALUES (NEW.organization_id)
            ON CONFLICT (organization_id) DO NOTHING;
    END LOOP;
    IF last_position IS NULL THEN
        last_position := 0;
        previous := ledger_chain_genesis(NEW.organization_id);
    END IF;
    NEW.position := last_position + 1;
    NEW.hash := sha256(
        previous
        || int8send(NEW.position)
        || uuid_send(NEW.originator_id)
        || int8send(NEW.originator_version)
        || int4send(length(topic_bytes)) || topic_bytes
        || int4send(length(NEW.state)) || NEW.state
        || int8send((extract(epoch FROM NEW.recorded_at - '2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint)
    );
    RETURN NEW;
END;
$$;

ALTER TABLE ledger_chain_heads
    DROP CONSTRAINT ledger_chain_heads_hash_with_position,
    DROP COLUMN last_hash,
    DROP COLUMN last_position;
