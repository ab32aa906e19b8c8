-- Trained adapters, content-addressed: every server and worker on this database reads
-- an adapter by its hash, whichever host trained it (issue 21). The files are the
-- PEFT directory's two files as written; a reader checks the hash when it loads them.
CREATE TABLE adapters (
    hash        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    weights     BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);
