-- Row-level security by organization, for the reader role that `ledger db roles` creates.
-- The tenant is a transaction-local setting (ledger.tenancy.tenant sets it with
-- set_config(..., true)), so a pooled connection never carries one tenant's setting into
-- the next transaction. Policies call these functions rather than naming tables, so a
-- rebuild that swaps tables leaves no policy pointing at a dropped one.
CREATE FUNCTION ledger_tenant() RETURNS uuid
LANGUAGE sql STABLE
AS $$ SELECT nullif(current_setting('ledger.organization_id', true), '')::uuid $$;

CREATE FUNCTION ledger_content_in_tenant(content uuid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$ SELECT EXISTS (SELECT 1 FROM content c WHERE c.id = content AND c.organization_id = ledger_tenant()) $$;

CREATE FUNCTION ledger_user_in_tenant(who text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT EXISTS (SELECT 1 FROM content_access a WHERE a.user_id = who AND a.organization_id = ledger_tenant())
        OR EXISTS (SELECT 1 FROM purchases p WHERE p.customer_id = who AND p.organization_id = ledger_tenant())
        OR EXISTS (SELECT 1 FROM content c WHERE c.creator_id = who AND c.organization_id = ledger_tenant())
$$;
