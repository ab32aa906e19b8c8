-- Matches and the entries that play in them. An entry waits in the queue with no
-- match, then joins exactly one. One agent never plays twice in one match.
CREATE TABLE matches (
    id             ID_PK,
    space_id       BIGINT NOT NULL REFERENCES spaces (id),
    fee_tier_id    BIGINT NOT NULL REFERENCES fee_tiers (id),
    seed           BIGINT NOT NULL,
    space_version  TEXT NOT NULL,
    status         TEXT NOT NULL
                   CHECK (status IN ('pending', 'running', 'settled', 'refunded', 'failed')),
    created_at     BIGINT NOT NULL,
    started_at     BIGINT,
    finished_at    BIGINT,
    result_hash    TEXT,
    error          TEXT
);
CREATE INDEX matches_space_status ON matches (space_id, status);

CREATE TABLE entries (
    id                ID_PK,
    user_id           BIGINT NOT NULL REFERENCES users (id),
    agent_id          BIGINT NOT NULL REFERENCES agents (id),
    agent_version_id  BIGINT NOT NULL REFERENCES agent_versions (id),
    space_id          BIGINT NOT NULL REFERENCES spaces (id),
    fee_tier_id       BIGINT NOT NULL REFERENCES fee_tiers (id),
    fee_wei           TEXT NOT NULL WEI_CHECK(fee_wei),
    match_id          BIGINT REFERENCES matches (id),
    status            TEXT NOT NULL
                      CHECK (status IN ('queued', 'matched', 'settled', 'refunded', 'withdrawn')),
    created_at        BIGINT NOT NULL,
    UNIQUE (match_id, agent_id)
);
CREATE INDEX entries_queue ON entries (space_id, fee_tier_id, status);
