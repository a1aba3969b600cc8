DROP FUNCTION IF EXISTS ledger_user_in_tenant(text);
DROP FUNCTION IF EXISTS ledger_content_in_tenant(uuid);
DROP FUNCTION IF EXISTS ledger_tenant();
