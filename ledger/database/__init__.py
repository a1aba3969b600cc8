"""The database itself: ``connections`` (from the URL exactly as given), ``migrations``
(the SQL that creates the log and the tables, and its runner), ``roles`` (grants and
policies) and ``embedded`` (the PostgreSQL the ledger runs when given no URL)."""
