-- An entry remembers whether an auto-entry rule made it, so a refunded match gives the
-- rule back what it spent: a match that never played costs nobody their cap.
ALTER TABLE entries ADD COLUMN auto_entry BIGINT NOT NULL DEFAULT 0;
