"""The playback store: heartbeats recorded beside the money log (issue 26).

Heartbeats are most of a video platform's traffic and matter only for resuming and for
watch time, so they do not go through the money log (its global lock, its hash chain,
its forever): ``decide.py`` holds their rules, pure; ``store.py`` decides and writes a
group of them set-based on PostgreSQL, projected into ``video_playback`` and
``content_access.last_accessed_at`` in the same transaction; ``memory.py`` does the
same on rows in memory, for the decisions' unit tests. docs/events.md, "The playback
store".
"""
