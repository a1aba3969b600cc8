-- The policies `ledger db roles` put on the projected tables call the tenancy functions
-- of this migration and of 0005: they go first, so that those functions can go (the
-- tables keep row-level security on, so a role without a policy sees nothing until
-- `ledger db roles` runs again).
DO $$
DECLARE
    found record;
BEGIN
    FOR found IN
        SELECT p.policyname, p.tablename FROM pg_policies p
         WHERE p.schemaname = current_schema()
           AND p.policyname IN ('ledger_writers', 'ledger_tenant', 'ledger_bound')
           AND p.tablename IN ('organizations', 'users', 'content', 'content_access',
                               'purchases', 'video_playback')
    LOOP
        EXECUTE format('DROP POLICY %I ON %I', found.policyname, found.tablename);
    END LOOP;
END;
$$;
DROP FUNCTION IF EXISTS ledger_user_in_organization(text, uuid);
DROP FUNCTION IF EXISTS ledger_content_in_organization(uuid, uuid);
DROP FUNCTION IF EXISTS ledger_bound_organization();
