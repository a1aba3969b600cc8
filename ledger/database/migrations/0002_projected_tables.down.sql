-- The review's rollback: drop the projected tables, dependants first.
-- Never touches ledger_events: the log stays, and `ledger projections rebuild`
-- (after `ledger db upgrade`) restores every row from it.
DROP TABLE IF EXISTS video_playback;
DROP TABLE IF EXISTS purchases;
DROP TABLE IF EXISTS content_access;
DROP TABLE IF EXISTS content;
DROP TABLE IF EXISTS users;
DROP TABLE IF EXISTS organizations;
