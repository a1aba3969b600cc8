-- scope: log
-- Whose idempotency keys a compaction folded away (issue 27, docs/privacy.md). A heartbeat's
-- key (playback_keys) is kept for ever, but its heartbeat, which named the person, goes at
-- compaction: without this table nothing would say whose key it was, and an erasure could
-- not find it. `ledger playback compact` writes a row for each keyed heartbeat it drops, in
-- its transaction; `user.erase` deletes the person's rows here and their keys in
-- playback_keys, in the erasure's. Keys compacted before this migration have no owner
-- recorded (docs/privacy.md, "Older events" says what an operator does about them).
CREATE TABLE playback_compacted_keys (
    idempotency_key text PRIMARY KEY,
    user_id text NOT NULL
);
CREATE INDEX playback_compacted_keys_user ON playback_compacted_keys (user_id);
