-- The keys without the organization again. Refused (a unique violation, nothing changed)
-- only if two organizations' rows share an id or a payment intent, which the log never
-- lets happen.
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
