"""The money log: the append-only table of events, and how the ledger writes and decodes it.

``recorder`` (the library's PostgreSQL recorder, extended: the append's transaction also
checks the versions a decision read and applies its projected rows), ``datastore`` (the
write side's connection pool) and ``shapes`` (what each event holds, per topic and version:
the catalogue the log's insert trigger checks and every reader decodes through).
"""
