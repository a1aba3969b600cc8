-- Back to 0014's chain trigger (the chain's last event found by a join to its row).
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

-- 0004's read-version check
CREATE OR REPLACE FUNCTION ledger_assert_read_versions(ids uuid[], versions bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    stale uuid;
BEGIN
    SELECT r.id INTO stale
      FROM unnest(ids, versions) AS r(id, version)
     WHERE coalesce((SELECT max(e.originator_version) FROM ledger_events e
                      WHERE e.originator_id = r.id), 0) <> r.version
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: aggregate % moved on since it was read', stale
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END;
$$;
