-- The journal is append-only: the database itself refuses edits and deletes.
CREATE FUNCTION ledger_journal_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger_journal is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_journal_no_update BEFORE UPDATE OR DELETE ON ledger_journal
    FOR EACH ROW EXECUTE FUNCTION ledger_journal_append_only();
