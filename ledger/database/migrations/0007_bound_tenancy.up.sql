-- Row-level security for logins bound to one organization (`ledger db roles
-- --organization UUID --login NAME`). The organization comes from
-- ledger_tenant_logins (migration log_guards, owned by the owner role), looked up by the
-- role the query runs as; no setting enters into it. Policies call
-- `(SELECT ledger_bound_organization())`, so the lookup runs once per query.
-- plpgsql: its body names a log-side table, which a rebuild's shadow schema lacks.
CREATE FUNCTION ledger_bound_organization() RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $$
BEGIN
    RETURN (SELECT b.organization_id FROM ledger_tenant_logins b WHERE b.login = current_user);
END;
$$;

CREATE FUNCTION ledger_content_in_organization(content uuid, organization uuid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$ SELECT EXISTS (SELECT 1 FROM content c WHERE c.id = content AND c.organization_id = organization) $$;

CREATE FUNCTION ledger_user_in_organization(who text, organization uuid) RETURNS boolean
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT EXISTS (SELECT 1 FROM content_access a WHERE a.user_id = who AND a.organization_id = organization)
        OR EXISTS (SELECT 1 FROM purchases p WHERE p.customer_id = who AND p.organization_id = organization)
        OR EXISTS (SELECT 1 FROM content c WHERE c.creator_id = who AND c.organization_id = organization)
$$;
