-- scope: log
-- A person's data (issue 27, docs/privacy.md). The log names people by subjects, random
-- pseudonyms drawn at registration; this table is the one place that ties a person's id to
-- their subject. The writer adds a row with the registration's events and deletes it with
-- an erasure's (`user.erase`): no other statement changes it (`ledger db roles` grants
-- SELECT, INSERT, DELETE, never UPDATE). It lives beside the log, so one backup restores a
-- working ledger. A log migration: the log's events name these subjects, and a rollback to
-- base keeps them.
CREATE TABLE IF NOT EXISTS ledger_subjects (
    user_id text PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 255),
    subject text NOT NULL UNIQUE CHECK (subject ~ '^subject:[0-9a-f-]{36}$')
);

-- UserErased: the erasure's event (a UserDeleted that also forgets the subject). Rows
-- derived from ledger/domain/events.py by `python -m ledger.log.shapes`
-- (tests/integration/test_event_catalogue.py keeps them equal); no event of version 1 was
-- ever written, so that row is history from the start.
INSERT INTO ledger_event_catalogue (topic, version, fields, shape) VALUES
    ('UserErased', 1, '{"timestamp":["object"],"occurred_at":["string"],"user_id":["string"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string"'),
    ('UserErased', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"user_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string"');
UPDATE ledger_event_catalogue SET superseded_at = now() WHERE topic = 'UserErased' AND version = 1;
