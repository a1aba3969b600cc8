-- scope: log
-- The chain trigger and the read-version check made routable by Citus (issue 28, docs/scaling.md "The log on Citus"):
-- on a log distributed by organization_id the trigger runs on each worker's shard, and
-- Citus plans a statement of a trigger to one colocated shard only when every distributed
-- table in it is filtered by the distribution column with a value. 0014's statement found
-- the chain's last event with `l.organization_id = h.organization_id` (a join): Citus
-- refuses it ("could not run distributed query with FOR UPDATE/SHARE commands"). Here both
-- tables are filtered by NEW.organization_id. On a single server it is the same plan, the
-- same row lock and the same index probe.
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
                 WHERE l.organization_id = NEW.organization_id
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

-- The read-version check of migration 0004, without its correlated subquery over unnest(),
-- which Citus refuses on a distributed log ("correlated subqueries are not supported when
-- the FROM clause contains a set returning function"): the versions of the aggregates read
-- in one grouped query, joined to what was read. The same answers, the same index (the
-- aggregate's versions) on a single server.
CREATE OR REPLACE FUNCTION ledger_assert_read_versions(ids uuid[], versions bigint[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    stale uuid;
BEGIN
    SELECT r.id INTO stale
      FROM unnest(ids, versions) AS r(id, version)
      LEFT JOIN (SELECT e.originator_id, max(e.originator_version) AS version
                   FROM ledger_events e WHERE e.originator_id = ANY(ids)
                  GROUP BY e.originator_id) m ON m.originator_id = r.id
     WHERE coalesce(m.version, 0) <> r.version
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: aggregate % moved on since it was read', stale
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END;
$$;
