-- The projected tables: the reviewed schema (shared/schema-review.md) with every
-- recommendation applied. docs/schema.md maps each finding to the lines below and
-- to the test that proves it. Rows are written only by the projections, from events.

CREATE TABLE organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name varchar(255) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organizations_name_not_empty CHECK (length(name) >= 1)
);

CREATE TABLE users (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_id_length CHECK (length(id) BETWEEN 1 AND 255)
);

CREATE TABLE content (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    creator_id text REFERENCES users (id) ON DELETE SET NULL,
    title varchar(500) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT content_title_not_empty CHECK (length(title) >= 1)
);
CREATE INDEX idx_content_organization_id ON content (organization_id);
CREATE INDEX idx_content_creator_id ON content (creator_id);

-- content_access: H1 organization_id (CASCADE, indexed), M1 access_type CHECK,
-- M3 updated_at, L1 timestamptz, L2 created_at index, L4 expires_at, and the
-- documented granted_at, last_accessed_at and UNIQUE (user_id, content_id).
CREATE TABLE content_access (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_id uuid NOT NULL REFERENCES content (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    access_type varchar(50) NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    last_accessed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT content_access_access_type_check
        CHECK (access_type IN ('purchased', 'subscription', 'complimentary', 'preview')),
    CONSTRAINT content_access_expires_after_grant
        CHECK (expires_at IS NULL OR expires_at > granted_at),
    CONSTRAINT content_access_purchased_is_permanent
        CHECK (access_type <> 'purchased' OR expires_at IS NULL),
    CONSTRAINT content_access_user_id_content_id_unique UNIQUE (user_id, content_id)
);
CREATE INDEX idx_content_access_user_id ON content_access (user_id);
CREATE INDEX idx_content_access_content_id ON content_access (content_id);
CREATE INDEX idx_content_access_organization_id ON content_access (organization_id);
CREATE INDEX idx_content_access_created_at ON content_access (created_at);

-- purchases: H1 organization_id (RESTRICT, indexed), M1 status CHECK, M4 currency,
-- L1 timestamptz, L2 created_at index, L3 stripe_payment_intent_id UNIQUE NOT NULL,
-- the documented revenue split columns with their CHECKs, refunded_amount_cents
-- and updated_at. Fees are unknown until a purchase completes, so they are NULL
-- exactly while it is pending or failed. Sums are checked in bigint: three
-- integers near 2^31 must not overflow the check itself.
CREATE TABLE purchases (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_id uuid NOT NULL REFERENCES content (id) ON DELETE RESTRICT,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE RESTRICT,
    stripe_payment_intent_id varchar(255) NOT NULL,
    status varchar(50) NOT NULL,
    amount_paid_cents integer NOT NULL,
    currency varchar(3) NOT NULL DEFAULT 'usd',
    revenue_split_config_id uuid,
    platform_fee_cents integer,
    organization_fee_cents integer,
    creator_payout_cents integer,
    refunded_amount_cents integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT purchases_stripe_payment_intent_id_unique UNIQUE (stripe_payment_intent_id),
    CONSTRAINT purchases_stripe_payment_intent_id_not_empty
        CHECK (length(stripe_payment_intent_id) >= 1),
    CONSTRAINT purchases_status_check
        CHECK (status IN ('pending', 'completed', 'refunded', 'failed')),
    CONSTRAINT purchases_amount_paid_cents_positive CHECK (amount_paid_cents > 0),
    CONSTRAINT purchases_currency_iso4217 CHECK (currency ~ '^[a-z]{3}$'),
    CONSTRAINT purchases_fees_non_negative CHECK (
        platform_fee_cents >= 0 AND organization_fee_cents >= 0 AND creator_payout_cents >= 0
    ),
    CONSTRAINT purchases_fees_all_or_none CHECK (
        (platform_fee_cents IS NULL) = (organization_fee_cents IS NULL)
        AND (platform_fee_cents IS NULL) = (creator_payout_cents IS NULL)
    ),
    CONSTRAINT purchases_fees_sum_to_amount CHECK (
        platform_fee_cents::bigint + organization_fee_cents::bigint
            + creator_payout_cents::bigint = amount_paid_cents::bigint
    ),
    CONSTRAINT purchases_fees_known_once_completed CHECK (
        status IN ('pending', 'failed') OR platform_fee_cents IS NOT NULL
    ),
    CONSTRAINT purchases_refunded_amount_in_range
        CHECK (refunded_amount_cents BETWEEN 0 AND amount_paid_cents),
    CONSTRAINT purchases_refunded_status_matches_amount CHECK (
        (status = 'refunded') = (refunded_amount_cents = amount_paid_cents)
    ),
    CONSTRAINT purchases_refunds_only_after_completion CHECK (
        refunded_amount_cents = 0 OR status IN ('completed', 'refunded')
    )
);
CREATE INDEX idx_purchases_customer_id ON purchases (customer_id);
CREATE INDEX idx_purchases_content_id ON purchases (content_id);
CREATE INDEX idx_purchases_organization_id ON purchases (organization_id);
CREATE INDEX idx_purchases_created_at ON purchases (created_at);

-- video_playback: as reviewed, with L1 (timestamptz everywhere) and M2 (the partial
-- index on completed rows); progress stays within the video.
CREATE TABLE video_playback (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_id uuid NOT NULL REFERENCES content (id) ON DELETE CASCADE,
    position_seconds integer NOT NULL DEFAULT 0,
    duration_seconds integer NOT NULL,
    completed boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT video_playback_user_id_content_id_unique UNIQUE (user_id, content_id),
    CONSTRAINT video_playback_duration_positive CHECK (duration_seconds >= 1),
    CONSTRAINT video_playback_position_in_video
        CHECK (position_seconds BETWEEN 0 AND duration_seconds)
);
CREATE INDEX idx_video_playback_user_id ON video_playback (user_id);
CREATE INDEX idx_video_playback_content_id ON video_playback (content_id);
CREATE INDEX idx_video_playback_user_completed ON video_playback (user_id, completed)
    WHERE completed = TRUE;
