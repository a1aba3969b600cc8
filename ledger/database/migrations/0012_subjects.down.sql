-- Subjects: the catalogue forgets UserErased. The table stays while it names anyone:
-- the log's events since 0012 name people by these subjects, and dropping it would
-- erase everyone at once (docs/privacy.md).
DELETE FROM ledger_event_catalogue WHERE topic = 'UserErased';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_subjects) THEN
        RAISE NOTICE 'ledger_subjects kept: the log names people by its subjects';
    ELSE
        DROP TABLE ledger_subjects;
    END IF;
END;
$$;
