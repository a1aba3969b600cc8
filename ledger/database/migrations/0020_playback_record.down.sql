-- scope: log
DROP FUNCTION playback_record(json, bigint);
