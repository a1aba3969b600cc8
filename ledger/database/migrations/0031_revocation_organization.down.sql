-- rolls back on citus
-- A revocation's organization: back to version 2 as the current version of AccessRevoked.
-- Events of version 3 already in the log stay; they carry every field version 2 requires.
DELETE FROM ledger_event_catalogue WHERE version = 3 AND topic = 'AccessRevoked';
UPDATE ledger_event_catalogue SET superseded_at = NULL
 WHERE version = 2 AND topic = 'AccessRevoked';
