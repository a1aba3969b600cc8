-- The owners of compacted keys: without them an erasure no longer finds a person's
-- compacted heartbeats' keys (docs/privacy.md).
DROP TABLE playback_compacted_keys;
