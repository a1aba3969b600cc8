-- scope: log
-- Events version 2: every event records its provenance (source, correlation_id,
-- idempotency_key; docs/events.md). A log migration: kept by `ledger db downgrade --to
-- base`, never run in a rebuild's shadow schema.
--
-- The catalogue now holds every version of each topic (rows derived from
-- ledger/domain/events.py and its upcasters by `python -m ledger.event_shapes`;
-- tests/integration/test_event_catalogue.py keeps them equal). An event's version is the
-- `class_version` of its state (absent: 1, as the eventsourcing library writes it).
--
-- New events must be of their topic's current version. An earlier version is history:
-- the readers upcast it (ledger/domain/upcasters.py), and the database takes it only as
-- an event recorded before this migration superseded its version (`superseded_at`), as
-- when a log written by an earlier version is loaded as stored rows (a restore, the
-- golden logs). The stored bytes of the events already in the log never change.
ALTER TABLE ledger_event_catalogue
    ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN superseded_at timestamptz;
ALTER TABLE ledger_event_catalogue ALTER COLUMN version DROP DEFAULT;
ALTER TABLE ledger_event_catalogue DROP CONSTRAINT ledger_event_catalogue_pkey;
ALTER TABLE ledger_event_catalogue ADD PRIMARY KEY (topic, version);

UPDATE ledger_event_catalogue SET superseded_at = now() WHERE version = 1;

INSERT INTO ledger_event_catalogue (topic, version, fields, shape) VALUES
    ('AccessGranted', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"],"organization_id":["string"],"access_type":["string"],"expires_at":["string","null"],"stripe_payment_intent_id":["string","null"],"identity":["string","null"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && $."access_type".type() == "string" && ($."expires_at".type() == "string" || $."expires_at".type() == "null") && ($."stripe_payment_intent_id".type() == "string" || $."stripe_payment_intent_id".type() == "null") && ($."identity".type() == "string" || $."identity".type() == "null")'),
    ('AccessOpened', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string"'),
    ('AccessPurchaseReleased', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string"'),
    ('AccessRevoked', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"],"reason":["string","null"],"stripe_payment_intent_id":["string","null"],"identity":["string","null"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string" && ($."reason".type() == "string" || $."reason".type() == "null") && ($."stripe_payment_intent_id".type() == "string" || $."stripe_payment_intent_id".type() == "null") && ($."identity".type() == "string" || $."identity".type() == "null")'),
    ('CommandKeyClaimed', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"namespace":["string"],"key":["string"],"command_type":["string"],"fingerprint":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."namespace".type() == "string" && $."key".type() == "string" && $."command_type".type() == "string" && $."fingerprint".type() == "string"'),
    ('ContentDeleted', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"content_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."content_id".type() == "string"'),
    ('ContentPublished', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"content_id":["string"],"organization_id":["string"],"creator_id":["string"],"title":["string"],"fingerprint":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && $."creator_id".type() == "string" && $."title".type() == "string" && $."fingerprint".type() == "string"'),
    ('OrganizationRegistered', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"organization_id":["string"],"name":["string"],"fingerprint":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."organization_id".type() == "string" && $."name".type() == "string" && $."fingerprint".type() == "string"'),
    ('PlaybackOpened', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string"'),
    ('PlaybackProgressed', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"],"position_seconds":["integer"],"duration_seconds":["integer"],"completed":["boolean"],"identity":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string" && ($."position_seconds".type() == "number" && $."position_seconds".floor() == $."position_seconds") && ($."duration_seconds".type() == "number" && $."duration_seconds".floor() == $."duration_seconds") && $."completed".type() == "boolean" && $."identity".type() == "string"'),
    ('PurchaseCompleted', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"],"customer_id":["string"],"content_id":["string"],"organization_id":["string"],"creator_id":["string"],"amount_paid_cents":["integer"],"currency":["string"],"platform_fee_cents":["integer"],"organization_fee_cents":["integer"],"creator_payout_cents":["integer"],"revenue_split_config_id":["string","null"],"fingerprint":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string" && $."customer_id".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && $."creator_id".type() == "string" && ($."amount_paid_cents".type() == "number" && $."amount_paid_cents".floor() == $."amount_paid_cents") && $."currency".type() == "string" && ($."platform_fee_cents".type() == "number" && $."platform_fee_cents".floor() == $."platform_fee_cents") && ($."organization_fee_cents".type() == "number" && $."organization_fee_cents".floor() == $."organization_fee_cents") && ($."creator_payout_cents".type() == "number" && $."creator_payout_cents".floor() == $."creator_payout_cents") && ($."revenue_split_config_id".type() == "string" || $."revenue_split_config_id".type() == "null") && $."fingerprint".type() == "string"'),
    ('PurchaseFailed', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"],"customer_id":["string"],"content_id":["string"],"organization_id":["string"],"amount_paid_cents":["integer"],"currency":["string"],"fingerprint":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string" && $."customer_id".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && ($."amount_paid_cents".type() == "number" && $."amount_paid_cents".floor() == $."amount_paid_cents") && $."currency".type() == "string" && $."fingerprint".type() == "string"'),
    ('PurchaseOpened', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"stripe_payment_intent_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string"'),
    ('PurchaseRefunded', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"],"refund_id":["string"],"amount_cents":["integer"],"reason":["string","null"],"currency":["string"],"organization_id":["string"],"content_id":["string"],"creator_id":["string"],"customer_id":["string"],"refunded_amount_cents":["integer"],"status":["string"],"platform_refund_cents":["integer"],"organization_refund_cents":["integer"],"creator_refund_cents":["integer"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string" && $."refund_id".type() == "string" && ($."amount_cents".type() == "number" && $."amount_cents".floor() == $."amount_cents") && ($."reason".type() == "string" || $."reason".type() == "null") && $."currency".type() == "string" && $."organization_id".type() == "string" && $."content_id".type() == "string" && $."creator_id".type() == "string" && $."customer_id".type() == "string" && ($."refunded_amount_cents".type() == "number" && $."refunded_amount_cents".floor() == $."refunded_amount_cents") && $."status".type() == "string" && ($."platform_refund_cents".type() == "number" && $."platform_refund_cents".floor() == $."platform_refund_cents") && ($."organization_refund_cents".type() == "number" && $."organization_refund_cents".floor() == $."organization_refund_cents") && ($."creator_refund_cents".type() == "number" && $."creator_refund_cents".floor() == $."creator_refund_cents")'),
    ('PurchaseStarted', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"],"customer_id":["string"],"content_id":["string"],"organization_id":["string"],"amount_paid_cents":["integer"],"currency":["string"],"fingerprint":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string" && $."customer_id".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && ($."amount_paid_cents".type() == "number" && $."amount_paid_cents".floor() == $."amount_paid_cents") && $."currency".type() == "string" && $."fingerprint".type() == "string"'),
    ('UserDeleted', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"occurred_at":["string"],"user_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string"'),
    ('UserRegistered', 2, '{"source":["string"],"correlation_id":["string","null"],"idempotency_key":["string","null"],"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"user_id":["string"]}', '$."source".type() == "string" && ($."correlation_id".type() == "string" || $."correlation_id".type() == "null") && ($."idempotency_key".type() == "string" || $."idempotency_key".type() == "null") && $."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."user_id".type() == "string"')
;

-- Fast path: one index lookup and one jsonpath match, as before. The slow path, only
-- for an event it refuses, names the first field that is wrong; the version is judged
-- after the shape, so an event that is not one of any version says which field is wrong.
CREATE OR REPLACE FUNCTION ledger_events_check_shape() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    expected jsonpath;
    wanted jsonb;
    superseded timestamptz;
    stored_version integer := 1;
    doc jsonb;
    field text;
    kinds jsonb;
    kind text;
    problem text;
BEGIN
    doc := convert_from(NEW.state, 'UTF8')::jsonb;
    IF jsonb_typeof(doc) = 'object' AND doc ? 'class_version' THEN
        IF jsonb_typeof(doc -> 'class_version') = 'number'
           AND jsonb_path_match(doc, '$.class_version >= 1 && $.class_version <= 1000000
                                      && $.class_version.floor() == $.class_version') THEN
            stored_version := (doc ->> 'class_version')::numeric::integer;
        ELSE
            stored_version := NULL;
        END IF;
    END IF;
    SELECT c.shape, c.fields, c.superseded_at INTO expected, wanted, superseded
      FROM ledger_event_catalogue c WHERE c.topic = NEW.topic AND c.version = stored_version;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM ledger_event_catalogue c WHERE c.topic = NEW.topic) THEN
            RAISE EXCEPTION 'ledger_events: refusing an event of topic %: not in the event catalogue',
                quote_literal(NEW.topic)
                USING ERRCODE = 'data_exception',
                      HINT = 'Only events of ledger_event_catalogue''s topics decode; append through the ledger.';
        END IF;
        RAISE EXCEPTION 'ledger_events: refusing an event of topic %: its class_version % is not a version of it in the event catalogue',
            NEW.topic, coalesce(doc -> 'class_version', 'null'::jsonb)
            USING ERRCODE = 'data_exception',
                  HINT = 'Every event must decode into its class; append through the ledger.';
    END IF;
    IF jsonb_typeof(doc) = 'object' AND jsonb_path_match(doc, expected) THEN
        IF superseded IS NOT NULL AND NEW.recorded_at >= superseded THEN
            RAISE EXCEPTION 'ledger_events: refusing an event of topic %: its version % was superseded at %; new events must be of the current version',
                NEW.topic, stored_version, superseded
                USING ERRCODE = 'data_exception',
                      HINT = 'An earlier version is history: only events recorded before it was superseded are taken. Append through the current ledger.';
        END IF;
        RETURN NEW;
    END IF;
    IF jsonb_typeof(doc) <> 'object' THEN
        problem := 'its state is not a JSON object';
    ELSE
        FOR field, kinds IN SELECT key, value FROM jsonb_each(wanted) LOOP
            IF NOT doc ? field THEN
                problem := format('the field %s is missing', field);
                EXIT;
            END IF;
            kind := jsonb_typeof(doc -> field);
            CONTINUE WHEN kinds ? kind;
            CONTINUE WHEN kind = 'number' AND kinds ? 'integer'
                AND jsonb_path_match(doc -> field, '$.floor() == $');
            problem := format('the field %s is not %s', field,
                            (SELECT string_agg(k, ' or ') FROM jsonb_array_elements_text(kinds) k));
            EXIT;
        END LOOP;
    END IF;
    RAISE EXCEPTION 'ledger_events: refusing an event of topic %: %', NEW.topic,
        coalesce(problem, 'its state does not match the catalogue')
        USING ERRCODE = 'data_exception',
              HINT = 'Every event must decode into its class; append through the ledger.';
END;
$$;
