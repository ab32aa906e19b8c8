-- How far the chain follower has read each contract's events (issue 20): the last
-- block whose events are in the journal. A restart carries on from the block after.
CREATE TABLE chain_cursors (
    name       TEXT PRIMARY KEY,
    block      BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
