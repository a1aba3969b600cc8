-- scope: log
-- The log's own guards and bookkeeping, kept when `ledger db downgrade --to base` rolls
-- the projected tables back (a "log" migration: see ledger/migrations/__init__.py).
--
-- 1. The event catalogue. An event whose topic is unknown, or whose state is not a JSON
--    object carrying every field its class requires with the right JSON type, would
--    break every reader of the log for ever (the log cannot drop it). The database
--    refuses it at insert, whoever inserts it. The rows are derived from
--    ledger/domain/events.py by ledger/event_shapes.py (`python -m ledger.event_shapes`);
--    tests/integration/test_event_catalogue.py keeps them equal. Required fields are
--    those every stored version carries; fields added later with a default are optional.
CREATE TABLE ledger_event_catalogue (
    topic text PRIMARY KEY,
    fields jsonb NOT NULL,      -- field -> the JSON types it may have
    shape jsonpath NOT NULL     -- the same, as one predicate jsonb_path_match evaluates in C
);

INSERT INTO ledger_event_catalogue (topic, fields, shape) VALUES
    ('AccessGranted', '{"timestamp":["object"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"],"organization_id":["string"],"access_type":["string"],"expires_at":["string","null"],"stripe_payment_intent_id":["string","null"],"identity":["string","null"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && $."access_type".type() == "string" && ($."expires_at".type() == "string" || $."expires_at".type() == "null") && ($."stripe_payment_intent_id".type() == "string" || $."stripe_payment_intent_id".type() == "null") && ($."identity".type() == "string" || $."identity".type() == "null")'),
    ('AccessOpened', '{"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"]}', '$."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string"'),
    ('AccessPurchaseReleased', '{"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string"'),
    ('AccessRevoked', '{"timestamp":["object"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"],"reason":["string","null"],"stripe_payment_intent_id":["string","null"],"identity":["string","null"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string" && ($."reason".type() == "string" || $."reason".type() == "null") && ($."stripe_payment_intent_id".type() == "string" || $."stripe_payment_intent_id".type() == "null") && ($."identity".type() == "string" || $."identity".type() == "null")'),
    ('CommandKeyClaimed', '{"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"namespace":["string"],"key":["string"],"command_type":["string"],"fingerprint":["string"]}', '$."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."namespace".type() == "string" && $."key".type() == "string" && $."command_type".type() == "string" && $."fingerprint".type() == "string"'),
    ('ContentDeleted', '{"timestamp":["object"],"occurred_at":["string"],"content_id":["string"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."content_id".type() == "string"'),
    ('ContentPublished', '{"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"content_id":["string"],"organization_id":["string"],"creator_id":["string"],"title":["string"],"fingerprint":["string"]}', '$."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && $."creator_id".type() == "string" && $."title".type() == "string" && $."fingerprint".type() == "string"'),
    ('OrganizationRegistered', '{"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"organization_id":["string"],"name":["string"],"fingerprint":["string"]}', '$."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."organization_id".type() == "string" && $."name".type() == "string" && $."fingerprint".type() == "string"'),
    ('PlaybackOpened', '{"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"]}', '$."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string"'),
    ('PlaybackProgressed', '{"timestamp":["object"],"occurred_at":["string"],"user_id":["string"],"content_id":["string"],"position_seconds":["integer"],"duration_seconds":["integer"],"completed":["boolean"],"identity":["string"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string" && $."content_id".type() == "string" && ($."position_seconds".type() == "number" && $."position_seconds".floor() == $."position_seconds") && ($."duration_seconds".type() == "number" && $."duration_seconds".floor() == $."duration_seconds") && $."completed".type() == "boolean" && $."identity".type() == "string"'),
    ('PurchaseCompleted', '{"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"],"customer_id":["string"],"content_id":["string"],"organization_id":["string"],"creator_id":["string"],"amount_paid_cents":["integer"],"currency":["string"],"platform_fee_cents":["integer"],"organization_fee_cents":["integer"],"creator_payout_cents":["integer"],"revenue_split_config_id":["string","null"],"fingerprint":["string"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string" && $."customer_id".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && $."creator_id".type() == "string" && ($."amount_paid_cents".type() == "number" && $."amount_paid_cents".floor() == $."amount_paid_cents") && $."currency".type() == "string" && ($."platform_fee_cents".type() == "number" && $."platform_fee_cents".floor() == $."platform_fee_cents") && ($."organization_fee_cents".type() == "number" && $."organization_fee_cents".floor() == $."organization_fee_cents") && ($."creator_payout_cents".type() == "number" && $."creator_payout_cents".floor() == $."creator_payout_cents") && ($."revenue_split_config_id".type() == "string" || $."revenue_split_config_id".type() == "null") && $."fingerprint".type() == "string"'),
    ('PurchaseFailed', '{"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"],"customer_id":["string"],"content_id":["string"],"organization_id":["string"],"amount_paid_cents":["integer"],"currency":["string"],"fingerprint":["string"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string" && $."customer_id".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && ($."amount_paid_cents".type() == "number" && $."amount_paid_cents".floor() == $."amount_paid_cents") && $."currency".type() == "string" && $."fingerprint".type() == "string"'),
    ('PurchaseOpened', '{"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"stripe_payment_intent_id":["string"]}', '$."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string"'),
    ('PurchaseRefunded', '{"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"],"refund_id":["string"],"amount_cents":["integer"],"reason":["string","null"],"currency":["string"],"organization_id":["string"],"content_id":["string"],"creator_id":["string"],"customer_id":["string"],"refunded_amount_cents":["integer"],"status":["string"],"platform_refund_cents":["integer"],"organization_refund_cents":["integer"],"creator_refund_cents":["integer"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string" && $."refund_id".type() == "string" && ($."amount_cents".type() == "number" && $."amount_cents".floor() == $."amount_cents") && ($."reason".type() == "string" || $."reason".type() == "null") && $."currency".type() == "string" && $."organization_id".type() == "string" && $."content_id".type() == "string" && $."creator_id".type() == "string" && $."customer_id".type() == "string" && ($."refunded_amount_cents".type() == "number" && $."refunded_amount_cents".floor() == $."refunded_amount_cents") && $."status".type() == "string" && ($."platform_refund_cents".type() == "number" && $."platform_refund_cents".floor() == $."platform_refund_cents") && ($."organization_refund_cents".type() == "number" && $."organization_refund_cents".floor() == $."organization_refund_cents") && ($."creator_refund_cents".type() == "number" && $."creator_refund_cents".floor() == $."creator_refund_cents")'),
    ('PurchaseStarted', '{"timestamp":["object"],"occurred_at":["string"],"stripe_payment_intent_id":["string"],"customer_id":["string"],"content_id":["string"],"organization_id":["string"],"amount_paid_cents":["integer"],"currency":["string"],"fingerprint":["string"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."stripe_payment_intent_id".type() == "string" && $."customer_id".type() == "string" && $."content_id".type() == "string" && $."organization_id".type() == "string" && ($."amount_paid_cents".type() == "number" && $."amount_paid_cents".floor() == $."amount_paid_cents") && $."currency".type() == "string" && $."fingerprint".type() == "string"'),
    ('UserDeleted', '{"timestamp":["object"],"occurred_at":["string"],"user_id":["string"]}', '$."timestamp".type() == "object" && $."occurred_at".type() == "string" && $."user_id".type() == "string"'),
    ('UserRegistered', '{"timestamp":["object"],"originator_topic":["string"],"occurred_at":["string"],"user_id":["string"]}', '$."timestamp".type() == "object" && $."originator_topic".type() == "string" && $."occurred_at".type() == "string" && $."user_id".type() == "string"')
;

-- Fast path: one index lookup and one jsonpath match. The slow path, only for an event
-- it refuses, names the first field that is wrong.
CREATE FUNCTION ledger_events_check_shape() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    expected jsonpath;
    wanted jsonb;
    doc jsonb;
    field text;
    kinds jsonb;
    kind text;
    problem text;
BEGIN
    SELECT c.shape, c.fields INTO expected, wanted
      FROM ledger_event_catalogue c WHERE c.topic = NEW.topic;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger_events: refusing an event of topic %: not in the event catalogue',
            quote_literal(NEW.topic)
            USING ERRCODE = 'data_exception',
                  HINT = 'Only events of ledger_event_catalogue''s topics decode; append through the ledger.';
    END IF;
    doc := convert_from(NEW.state, 'UTF8')::jsonb;
    IF jsonb_typeof(doc) = 'object' AND jsonb_path_match(doc, expected) THEN
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

-- Named to fire before the hash chain (BEFORE triggers fire in name order): a refused
-- event is not hashed. ALWAYS: it fires in replica mode too.
CREATE TRIGGER ledger_events_check_shape
    BEFORE INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_check_shape();
ALTER TABLE ledger_events ENABLE ALWAYS TRIGGER ledger_events_check_shape;

-- 2. Projections known not to reflect the log. `ledger db upgrade` marks the projected
--    tables it creates over a non-empty log, in the transaction that creates them, and
--    the rebuild that fills them clears the mark in the transaction of its switch: a
--    killed upgrade leaves the mark, so appends keep refusing (the trigger below),
--    `ledger projections status` says stale, and the next upgrade fills them.
CREATE TABLE ledger_stale_projections (
    name text PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL
);

-- Enabled exactly while a mark exists (projections.freshness turns it on with the first
-- mark and off with the last, in the same transactions), so an append pays nothing for it
-- the rest of the time.
CREATE FUNCTION ledger_events_refuse_while_stale() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    RAISE EXCEPTION 'ledger: the projected tables % do not reflect the log yet: appends wait until `ledger db upgrade` (or `ledger projections rebuild`) has filled them',
        coalesce((SELECT string_agg(name, ', ' ORDER BY name) FROM ledger_stale_projections), '')
        USING ERRCODE = 'object_not_in_prerequisite_state';
END;
$$;

CREATE TRIGGER ledger_events_refuse_while_stale
    BEFORE INSERT ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_refuse_while_stale();
ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_refuse_while_stale;

-- A database whose projected tables were emptied by a rollback and re-created by an
-- earlier version (which did not fill them): organizations are never deleted, so an
-- empty organizations table under a log that registers one is stale.
DO $$
BEGIN
    IF to_regclass('organizations') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM organizations)
       AND EXISTS (SELECT 1 FROM ledger_events WHERE topic = 'OrganizationRegistered') THEN
        INSERT INTO ledger_stale_projections (name, reason)
        SELECT t, 'empty while the log registers organizations'
          FROM unnest(ARRAY['organizations', 'users', 'content', 'content_access',
                            'purchases', 'video_playback']) t;
        ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_refuse_while_stale;
    END IF;
END;
$$;

-- 3. Logins bound to one organization (`ledger db roles --organization UUID --login NAME`).
--    Owned by the owner role: a bound login can read its own row (the policy below) and
--    change none. The reader policies for bound logins look their organization up here,
--    so no setting of theirs reveals another organization.
CREATE TABLE ledger_tenant_logins (
    login name PRIMARY KEY,
    organization_id uuid NOT NULL,
    bound_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE ledger_tenant_logins ENABLE ROW LEVEL SECURITY;
CREATE POLICY ledger_own_binding ON ledger_tenant_logins FOR SELECT USING (login = current_user);
