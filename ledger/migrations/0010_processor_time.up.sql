-- scope: log
-- The organization an event of the log names, for the reader role's row-level security on
-- the log (`ledger db roles`, ledger/roles.py): a reader in a transaction set to one
-- organization, as `ledger serve` reads for a token bound to it, sees only the events
-- that name that organization (those carrying `organization_id`: purchases, refunds,
-- grants, content, the organization itself). NULL for the others.
CREATE FUNCTION ledger_event_organization(state bytea) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT convert_from(state, 'UTF8')::json ->> 'organization_id' $$;
