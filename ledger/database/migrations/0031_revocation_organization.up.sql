-- scope: log
-- Version 3 of AccessRevoked: `organization_id`, the organization of the access a revocation
-- removes (its grant's), so that on a distributed log the row's deletion is routed to that
-- organization's shard and a revocation is decided without the platform's chain (issue 28,
-- docs/scaling.md "A revocation on facts (i28r)"). The row derived from
-- ledger/domain/events.py by `python -m ledger.log.shapes`
-- (tests/integration/test_event_catalogue.py keeps them equal). Version 2 is history from
-- now on: the readers upcast it (organization_id null, its row deleted by user and content),
-- and the database takes it only as an event recorded before this migration.
UPDATE ledger_event_catalogue SET superseded_at = now()
 WHERE version = 2 AND topic = 'AccessRevoked';

INSERT INTO ledger_event_catalogue (topic, version, fields, shape) VALUES
    ('AccessRevoked', 3, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"],"organization_id":["string","null"],"reason":["string","null"],"stripe_payment_intent_id":["string","null"],"identity":["string","null"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string" && ($."organization_id".type() == "string" || $."organization_id".type() == "null") && ($."reason".type() == "string" || $."reason".type() == "null") && ($."stripe_payment_intent_id".type() == "string" || $."stripe_payment_intent_id".type() == "null") && ($."identity".type() == "string" || $."identity".type() == "null")')
;
