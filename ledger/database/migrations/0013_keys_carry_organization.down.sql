-- The keys without the organization again. Refused (a unique violation, nothing changed)
-- only if two organizations' rows share an id or a payment intent, which the log never
-- lets happen.
--
-- On a Citus coordinator whose tables `ledger db distribute` placed, keys without the
-- organization can only be kept on local tables: the tables come back to the coordinator
-- first (purchases with every table its foreign keys connect it to), as they were before
-- `ledger db distribute`; run it again after the next upgrade.
DO $$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid = 'purchases'::regclass) THEN
            PERFORM undistribute_table('purchases'::regclass, cascade_via_foreign_keys => true);
        END IF;
    END IF;
END;
$$;
ALTER TABLE purchases DROP CONSTRAINT purchases_stripe_payment_intent_id_unique;
ALTER TABLE purchases ADD CONSTRAINT purchases_stripe_payment_intent_id_unique
    UNIQUE (stripe_payment_intent_id);
ALTER TABLE purchases DROP CONSTRAINT purchases_pkey;
ALTER TABLE purchases ADD CONSTRAINT purchases_pkey PRIMARY KEY (id);

ALTER TABLE content_access DROP CONSTRAINT content_access_user_id_content_id_unique;
ALTER TABLE content_access ADD CONSTRAINT content_access_user_id_content_id_unique
    UNIQUE (user_id, content_id);
ALTER TABLE content_access DROP CONSTRAINT content_access_pkey;
ALTER TABLE content_access ADD CONSTRAINT content_access_pkey PRIMARY KEY (id);
