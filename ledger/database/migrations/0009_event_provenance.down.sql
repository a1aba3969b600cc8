-- Back to one version per topic (version 1, whose shapes are unchanged) and the shape
-- check of 0006_log_guards. Events of version 2 already in the log stay: they carry every
-- field version 1 requires, and the earlier version's readers ignore the rest.
DELETE FROM ledger_event_catalogue WHERE version <> 1;
ALTER TABLE ledger_event_catalogue DROP CONSTRAINT ledger_event_catalogue_pkey;
ALTER TABLE ledger_event_catalogue ADD PRIMARY KEY (topic);
ALTER TABLE ledger_event_catalogue DROP COLUMN version, DROP COLUMN superseded_at;

CREATE OR REPLACE FUNCTION ledger_events_check_shape() RETURNS trigger
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
