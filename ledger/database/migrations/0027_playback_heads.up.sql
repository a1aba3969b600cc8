-- scope: log
-- Each organization's own positions and lock for the playback store on Citus (issue 28,
-- docs/scaling.md "The playback store on Citus", docs/stream.md "The playback store's
-- stream"). On the distributed layout a group of heartbeats draws its organization's
-- positions by one upsert of that organization's row here (distributed by organization_id
-- beside content: on its worker), whose row lock is held to the commit: positions of one
-- organization commit in their order, those of different organizations never wait for each
-- other, and nothing is taken on the coordinator (no advisory lock, no sequence). A single
-- server keeps one order, `playback_positions` under the stream's advisory lock
-- (`playback_record`); it never writes this table.
-- (in one DO block: Citus sends a propagated command's text to every node, and the text of
-- a file of several statements cannot be run there)
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        -- one connection per node, as 0026: a migration that follows in the same
        -- transaction may touch a table with a foreign key to a reference table
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    CREATE TABLE playback_heads (
        organization_id uuid PRIMARY KEY,
        -- the organization's last position drawn (a rolled-back group's draw rolls back too)
        position bigint NOT NULL CHECK (position >= 0)
    );
    -- An organization's positions go on from the highest of its heartbeats already stored,
    -- so a reader's cursor (a position per organization) never meets a position twice.
    INSERT INTO playback_heads (organization_id, position)
    SELECT organization_id, max(position) FROM playback_heartbeats GROUP BY organization_id;
    -- The stream by organization (`ledger playback events --after CURSOR`, the HTTP feed of
    -- a token bound to an organization): one organization's records in position order.
    CREATE INDEX playback_heartbeats_organization_position
        ON playback_heartbeats (organization_id, position);
END
$$;
