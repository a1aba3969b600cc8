-- Keys that carry the organization (issue 28, docs/scaling.md). On Citus a table distributed
-- by organization_id can enforce a unique key only if the key includes organization_id, so
-- the money tables' keys include it here, on every server alike: one schema, one set of
-- statements, whether `ledger db distribute` ever runs or not.
--
-- purchases and content_access are the tables distributed by organization_id. Their rows'
-- ids are uuid5 of the natural key (ledger/domain/ids.py) and each row belongs to exactly
-- one organization (content belongs to one, and the row names it), so adding
-- organization_id in front of a key refuses exactly the rows it refused before within an
-- organization. Across organizations a payment intent stays unique through the log: the
-- purchase's aggregate id is uuid5 of the payment intent, so a second organization's
-- purchase of the same intent meets the first one's aggregate and is refused
-- (tests/integration/test_keys_carry_organization.py). The constraints keep their names.
ALTER TABLE content_access DROP CONSTRAINT content_access_pkey;
ALTER TABLE content_access ADD CONSTRAINT content_access_pkey PRIMARY KEY (organization_id, id);
ALTER TABLE content_access DROP CONSTRAINT content_access_user_id_content_id_unique;
ALTER TABLE content_access ADD CONSTRAINT content_access_user_id_content_id_unique
    UNIQUE (organization_id, user_id, content_id);

ALTER TABLE purchases DROP CONSTRAINT purchases_pkey;
ALTER TABLE purchases ADD CONSTRAINT purchases_pkey PRIMARY KEY (organization_id, id);
ALTER TABLE purchases DROP CONSTRAINT purchases_stripe_payment_intent_id_unique;
ALTER TABLE purchases ADD CONSTRAINT purchases_stripe_payment_intent_id_unique
    UNIQUE (organization_id, stripe_payment_intent_id);
