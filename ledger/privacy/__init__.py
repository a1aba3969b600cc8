"""A person's data (issue 27, docs/privacy.md): the subjects the log names people by
(``subjects``), their erasure (``user.erase``, decided in ``ledger.service``) and the
export of everything the ledger holds about them (``export``)."""
