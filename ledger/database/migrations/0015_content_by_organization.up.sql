-- Content by organization (issue 28, docs/scaling.md). On Citus `content` is distributed by
-- organization_id, colocated with purchases and content_access, so each organization's
-- videos live on the worker of its money rows; a distributed table can enforce only keys
-- that include organization_id, and a foreign key between two distributed tables must
-- carry it on both sides. So, on every server alike (one schema, the same statements):
--
-- * content's primary key is (organization_id, id);
-- * purchases and content_access reference content by (organization_id, content_id), with
--   the reviewed delete rules (RESTRICT for purchases, CASCADE for access rows). On one
--   server this holds everything the reviewed single-column keys held (content ids stay
--   unique, below) and more: a row's organization is its content's;
-- * content keeps UNIQUE (id), which video_playback's reviewed foreign key (content_id,
--   ON DELETE CASCADE) references: video_playback carries no organization. Citus can hold
--   neither on a distributed content, so `ledger db distribute` drops the two there
--   (docs/schema.md says what then keeps them).
--
-- One DO block: on a Citus coordinator where an older layout distributed these tables
-- already, Citus refuses DDL it must send to the workers from a query string holding several
-- commands; in PL/pgSQL each statement goes alone.
DO $$
BEGIN
    ALTER TABLE purchases DROP CONSTRAINT purchases_content_id_fkey;
    ALTER TABLE content_access DROP CONSTRAINT content_access_content_id_fkey;
    ALTER TABLE video_playback DROP CONSTRAINT video_playback_content_id_fkey;
    ALTER TABLE content DROP CONSTRAINT content_pkey;
    ALTER TABLE content ADD CONSTRAINT content_pkey PRIMARY KEY (organization_id, id);
    ALTER TABLE content ADD CONSTRAINT content_id_unique UNIQUE (id);
    ALTER TABLE purchases ADD CONSTRAINT purchases_content_id_fkey
        FOREIGN KEY (organization_id, content_id) REFERENCES content (organization_id, id)
        ON DELETE RESTRICT;
    ALTER TABLE content_access ADD CONSTRAINT content_access_content_id_fkey
        FOREIGN KEY (organization_id, content_id) REFERENCES content (organization_id, id)
        ON DELETE CASCADE;
    ALTER TABLE video_playback ADD CONSTRAINT video_playback_content_id_fkey
        FOREIGN KEY (content_id) REFERENCES content (id) ON DELETE CASCADE;
END;
$$;
