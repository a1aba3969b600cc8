"""The read side: nothing here writes the log.

``tables`` (queries of the projected tables: access checks, the player's lookup, a
reader's tenant), ``stream`` (the log as a stream of decoded events) and ``consumers``
(a stream followed with a durable checkpoint).
"""
