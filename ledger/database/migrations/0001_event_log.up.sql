-- The event log: the only source of truth.
--
-- Shape: the table the eventsourcing PostgreSQL application recorder writes
-- (originator_id, originator_version, topic, state, notification_id), plus
--   recorded_at  when the event was stored (business time is in the event's own occurred_at),
--   hash         a SHA-256 chain over every event's stored content and position.
-- The migration runner executes this with search_path set to the ledger's schema,
-- so names are unqualified on purpose.

CREATE TYPE stored_event_uuid AS (
    originator_id uuid,
    originator_version bigint,
    topic text,
    state bytea
);

CREATE TABLE ledger_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text NOT NULL,
    state bytea NOT NULL,
    notification_id bigserial NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    hash bytea NOT NULL,
    PRIMARY KEY (originator_id, originator_version)
);

CREATE UNIQUE INDEX ledger_events_notification_id_idx ON ledger_events (notification_id ASC);
CREATE INDEX ledger_events_recorded_at_idx ON ledger_events (recorded_at);

-- Append-only: the recorder's LOCK TABLE ... IN EXCLUSIVE MODE needs the UPDATE
-- privilege, so immutability cannot come from privileges. Triggers refuse every
-- UPDATE, DELETE and TRUNCATE, and ENABLE ALWAYS makes them fire even for a session
-- with session_replication_role = replica.
CREATE FUNCTION ledger_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The log is the source of truth; record a compensating event instead.';
END;
$$;

CREATE TRIGGER ledger_events_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_refuse_change();
CREATE TRIGGER ledger_events_no_truncate
    BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_refuse_change();
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_no_update_delete;
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_no_truncate;

-- The hash chain. Each event's hash covers the previous event's hash and every
-- stored byte of this one, each field length-prefixed so that no two different
-- events encode alike:
--   sha256(prev_hash || int8(notification_id) || uuid(originator_id)
--          || int8(originator_version) || int4(len(topic)) || topic
--          || int4(len(state)) || state || int8(recorded_at in microseconds since 2000))
-- prev_hash is 32 zero bytes for the first event. Appends hold the table's
-- EXCLUSIVE lock, so the previous event is the one with the highest notification_id.
-- ledger.audit.chain recomputes exactly this in Python.
CREATE FUNCTION ledger_events_chain() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    previous bytea;
    topic_bytes bytea := convert_to(NEW.topic, 'UTF8');
BEGIN
    SELECT e.hash INTO previous
      FROM ledger_events e
     ORDER BY e.notification_id DESC
     LIMIT 1;
    NEW.hash := sha256(
        coalesce(previous, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
        || int8send(NEW.notification_id)
        || uuid_send(NEW.originator_id)
        || int8send(NEW.originator_version)
        || int4send(length(topic_bytes)) || topic_bytes
        || int4send(length(NEW.state)) || NEW.state
        || int8send((extract(epoch FROM NEW.recorded_at - '2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint)
    );
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_events_hash_chain
    BEFORE INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_chain();
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_hash_chain;
