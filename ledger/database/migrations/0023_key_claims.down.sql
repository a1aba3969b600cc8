DROP TABLE ledger_key_claims;
