-- scope: log
-- Per-organization positions, chains and locks (issue 28, docs/stream.md, docs/audit.md).
--
-- Every event now belongs to one chain: its organization's, or the platform's (the nil
-- uuid, 00000000-0000-0000-0000-000000000000) for what no organization owns (a user's
-- registration, deletion or erasure). Within its chain an event has a gapless `position`,
-- in commit order (each chain's appends hold the chain's lock), and its hash chains it to
-- the event before it in the same chain. `notification_id` stays: one id per event across
-- the log, in commit order while the log keeps its global lock (below).
--
-- The hash keeps the old layout with the chain's position in the place of notification_id:
--   sha256(previous || int8(position) || uuid(originator_id) || int8(originator_version)
--          || int4(len(topic)) || topic || int4(len(state)) || state || int8(recorded_at))
-- `previous` is the hash of the chain's event before, or for a chain's first event its
-- genesis: 32 zero bytes for the platform chain, and for an organization's chain
-- sha256(origin || uuid(organization_id)), where origin is the old single chain's head
-- recorded below (32 zero bytes for a log that was empty at the switch). The genesis
-- binds each chain to its organization and to everything before the switch.
--
-- The old single chain becomes the start of the platform chain, each event at its old
-- position (position = notification_id, which is what its hash covers), so its hashes,
-- old anchors and old cursors stay valid. Its head is recomputed here and refused if the
-- chain is broken, then recorded in ledger_chain_origin before the switch.

-- 1. The old chain verified, its head recorded.
CREATE TABLE ledger_chain_origin (
    single_row boolean PRIMARY KEY DEFAULT true CHECK (single_row),
    head_position bigint NOT NULL,
    head_hash bytea NOT NULL CHECK (length(head_hash) = 32),
    events bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

DO $$
DECLARE
    previous bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    last_position bigint := 0;
    counted bigint := 0;
    computed bytea;
    e record;
BEGIN
    FOR e IN SELECT notification_id, originator_id, originator_version, topic, state,
                    recorded_at, hash
               FROM ledger_events ORDER BY notification_id LOOP
        computed := sha256(
            previous
            || int8send(e.notification_id)
            || uuid_send(e.originator_id)
            || int8send(e.originator_version)
            || int4send(length(convert_to(e.topic, 'UTF8'))) || convert_to(e.topic, 'UTF8')
            || int4send(length(e.state)) || e.state
            || int8send((extract(epoch FROM e.recorded_at - '2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint)
        );
        IF computed IS DISTINCT FROM e.hash THEN
            RAISE EXCEPTION 'ledger: the event log''s hash chain breaks at position %: the single chain cannot be carried into per-organization chains; run `ledger audit verify` and settle the break first',
                e.notification_id
                USING ERRCODE = 'data_corrupted';
        END IF;
        previous := e.hash;
        last_position := e.notification_id;
        counted := counted + 1;
    END LOOP;
    IF counted > 0 THEN
        INSERT INTO ledger_chain_origin (head_position, head_hash, events)
        VALUES (last_position, previous, counted);
    END IF;
END;
$$;

-- 2. The chain and position of every event. The old events join the platform chain at
-- their old positions: the append-only guard stands aside for this one statement, as the
-- owner, inside the migration's transaction.
ALTER TABLE ledger_events
    ADD COLUMN organization_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    ADD COLUMN position bigint;
ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_update_delete;
UPDATE ledger_events SET position = notification_id;
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_no_update_delete;
ALTER TABLE ledger_events ALTER COLUMN position SET NOT NULL;
CREATE UNIQUE INDEX ledger_events_chain_position_idx ON ledger_events (organization_id, position);

-- 3. The chains' locks: one row per chain, locked (FOR UPDATE) by every append to it and
-- kept until its commit. Rows of different chains never wait for each other.
CREATE TABLE ledger_chain_heads (
    organization_id uuid PRIMARY KEY,
    opened_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- a chain's row is made by its first append (the trigger, or the recorder's lock)

CREATE FUNCTION ledger_chain_genesis(organization uuid) RETURNS bytea
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT CASE WHEN organization = '00000000-0000-0000-0000-000000000000'::uuid
                THEN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE sha256(coalesce((SELECT o.head_hash FROM ledger_chain_origin o),
                                     '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                            || uuid_send(organization))
           END
$$;

-- 4. The chain trigger, per chain. It locks the chain's row first (a row the transaction
-- holds already costs a lookup), so any insert, not only the recorder's, draws positions
-- in commit order within the chain; then the chain's last event is one probe of
-- ledger_events_chain_position_idx.
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
