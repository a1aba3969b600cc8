-- scope: log
DROP FUNCTION playback_record(json, bigint);
DROP FUNCTION playback_decision(text, text, text, boolean, boolean, boolean, boolean, boolean, uuid, boolean, boolean, boolean, boolean, timestamptz, timestamptz, timestamptz, timestamptz, text);
