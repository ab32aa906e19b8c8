-- What happened inside a match: each round's task, each entry's response (with
-- the exact prompt it saw) and every judge's score of it.
CREATE TABLE rounds (
    id           ID_PK,
    match_id     BIGINT NOT NULL REFERENCES matches (id),
    round_index  BIGINT NOT NULL CHECK (round_index >= 0),
    task         TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    UNIQUE (match_id, round_index)
);

CREATE TABLE responses (
    id             ID_PK,
    round_id       BIGINT NOT NULL REFERENCES rounds (id),
    entry_id       BIGINT NOT NULL REFERENCES entries (id),
    prompt         TEXT NOT NULL,
    text           TEXT NOT NULL,
    tokens         BIGINT NOT NULL CHECK (tokens >= 0),
    finish_reason  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (round_id, entry_id)
);

CREATE TABLE judge_scores (
    id                ID_PK,
    response_id       BIGINT NOT NULL REFERENCES responses (id),
    judge             TEXT NOT NULL,
    model_hash        TEXT NOT NULL,
    template_version  TEXT NOT NULL,
    score             DOUBLE PRECISION NOT NULL CHECK (score >= 0 AND score <= 1),
    rationale         TEXT NOT NULL,
    UNIQUE (response_id, judge)
);
