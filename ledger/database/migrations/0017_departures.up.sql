-- scope: log
-- Departures (issue 28): a user's deletion or erasure on a layout split by organization
-- is one part per organization (UserLeftOrganization: the person's purchase and access
-- rows of that organization leave the tables) and then the global part (UserDeleted or
-- UserErased), each its own transaction and each done once, so a crash between them is
-- finished by the same command retried (docs/scaling.md). The catalogue learns the new
-- topic: rows derived from the event class (`python -m ledger.log.shapes`;
-- tests/integration/test_event_catalogue.py keeps them equal). No event of version 1 was
-- ever written, so that row is history from the start.
INSERT INTO ledger_event_catalogue (topic, version, fields, shape) VALUES
    ('UserLeftOrganization', 1, '{"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"user_id":["string"],"organization_id":["string"]}', '$."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."organization_id".type() == "string"'),
    ('UserLeftOrganization', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"user_id":["string"],"organization_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."organization_id".type() == "string"');;
UPDATE ledger_event_catalogue SET superseded_at = now()
 WHERE topic = 'UserLeftOrganization' AND version = 1;
