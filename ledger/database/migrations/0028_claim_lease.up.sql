-- scope: log
-- A log migration (kept by `ledger db downgrade --to base`). The fence of a key's claim
-- (ledger_key_claims, 0023) on a distributed log (docs/scaling.md, "Keys claimed first",
-- "A claim's lease"). A key's claim is taken in a transaction of its own before the
-- organization's append; a claim whose append never commits is taken over by another
-- organization once its lease (LEDGER_CLAIM_LEASE) has run out and its holder's chain holds
-- no event of the key. So the holder's append must end before the lease does: the recorder
-- calls this first in the append's transaction, with the deadline its claim's worker gave
-- (claimed_at + lease - a margin for the servers' clocks). A deadline already past refuses
-- the append before it writes (SQLSTATE 40001, retried by the recorder: it claims again,
-- renewing its claim or finding it taken); otherwise the transaction is bounded by it
-- (transaction_timeout, PostgreSQL 17+: a transaction still open then is ended, nothing
-- committed). On a server without transaction_timeout there is no bound, and no claim is
-- ever taken over (ledger.log.claims reads the same setting before taking). Called only on a
-- distributed log: a single server has no claims.
-- No SET clause (no search_path of its own: it names no table), so a call costs no
-- configuration nesting: it runs in every append that claims a key.
CREATE FUNCTION ledger_claim_fence(deadline timestamptz)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    budget bigint := floor(extract(epoch FROM deadline - clock_timestamp()) * 1000);
    bound text := current_setting('transaction_timeout', true);
BEGIN
    IF bound IS NULL THEN
        RETURN;  -- before PostgreSQL 17: no bound, and no claim is taken over
    END IF;
    IF budget <= 0 THEN
        RAISE EXCEPTION 'ledger: a key''s claim ran out of its lease (LEDGER_CLAIM_LEASE) '
            'before its append began; nothing was written, claim again'
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF bound <> '0' THEN
        -- a bound already running (a server's or role's transaction_timeout) is kept when
        -- it is the shorter; otherwise stopped, since a running timer is not restarted by a
        -- new value
        IF bound::interval <= budget * interval '1 ms' THEN
            RETURN;
        END IF;
        PERFORM set_config('transaction_timeout', '0', true);
    END IF;
    PERFORM set_config('transaction_timeout', budget || 'ms', true);
END;
$$;
