-- The journal is append-only: the database itself refuses edits and deletes.
CREATE TRIGGER ledger_journal_no_update BEFORE UPDATE ON ledger_journal
BEGIN
    SELECT RAISE(ABORT, 'ledger_journal is append-only');
END;
CREATE TRIGGER ledger_journal_no_delete BEFORE DELETE ON ledger_journal
BEGIN
    SELECT RAISE(ABORT, 'ledger_journal is append-only');
END;
