-- Content keyed by its id alone again, and the single-column foreign keys to it.
--
-- On a Citus coordinator whose tables `ledger db distribute` placed, the tables come back
-- to the coordinator first (content with every table its foreign keys connect it to), as
-- they were before `ledger db distribute`; run it again after the next upgrade.
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid = 'content'::regclass) THEN
            PERFORM undistribute_table('content'::regclass, cascade_via_foreign_keys => true);
        END IF;
    END IF;
    ALTER TABLE purchases DROP CONSTRAINT purchases_content_id_fkey;
    ALTER TABLE content_access DROP CONSTRAINT content_access_content_id_fkey;
    ALTER TABLE video_playback DROP CONSTRAINT IF EXISTS video_playback_content_id_fkey;
    ALTER TABLE content DROP CONSTRAINT IF EXISTS content_id_unique;
    ALTER TABLE content DROP CONSTRAINT content_pkey;
    ALTER TABLE content ADD CONSTRAINT content_pkey PRIMARY KEY (id);
    ALTER TABLE purchases ADD CONSTRAINT purchases_content_id_fkey
        FOREIGN KEY (content_id) REFERENCES content (id) ON DELETE RESTRICT;
    ALTER TABLE content_access ADD CONSTRAINT content_access_content_id_fkey
        FOREIGN KEY (content_id) REFERENCES content (id) ON DELETE CASCADE;
    ALTER TABLE video_playback ADD CONSTRAINT video_playback_content_id_fkey
        FOREIGN KEY (content_id) REFERENCES content (id) ON DELETE CASCADE;
END;
$$;
