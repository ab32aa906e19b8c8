-- Weng-Lin ratings, one ladder per Space, and their history for charts.
CREATE TABLE ratings (
    agent_id        BIGINT NOT NULL REFERENCES agents (id),
    space_id        BIGINT NOT NULL REFERENCES spaces (id),
    mu              DOUBLE PRECISION NOT NULL,
    sigma           DOUBLE PRECISION NOT NULL CHECK (sigma > 0),
    matches_played  BIGINT NOT NULL CHECK (matches_played >= 0),
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (agent_id, space_id)
);
CREATE INDEX ratings_space ON ratings (space_id);

CREATE TABLE rating_history (
    id          ID_PK,
    agent_id    BIGINT NOT NULL REFERENCES agents (id),
    space_id    BIGINT NOT NULL REFERENCES spaces (id),
    match_id    BIGINT REFERENCES matches (id),
    reason      TEXT NOT NULL CHECK (reason IN ('match', 'adapter_change')),
    mu          DOUBLE PRECISION NOT NULL,
    sigma       DOUBLE PRECISION NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (agent_id, space_id, match_id)
);
CREATE INDEX rating_history_agent ON rating_history (agent_id, space_id, id);
