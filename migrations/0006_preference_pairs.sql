-- Preference pairs cut from each round's ranking: the exact prompt the policy saw,
-- both completions, both agent versions, the margin and the judges' agreement.
CREATE TABLE preference_pairs (
    id                         ID_PK,
    match_id                   BIGINT NOT NULL REFERENCES matches (id),
    round_id                   BIGINT NOT NULL REFERENCES rounds (id),
    space_id                   BIGINT NOT NULL REFERENCES spaces (id),
    prompt                     TEXT NOT NULL,
    chosen_response_id         BIGINT NOT NULL REFERENCES responses (id),
    rejected_response_id       BIGINT NOT NULL REFERENCES responses (id),
    chosen                     TEXT NOT NULL,
    rejected                   TEXT NOT NULL,
    chosen_agent_version_id    BIGINT NOT NULL REFERENCES agent_versions (id),
    rejected_agent_version_id  BIGINT NOT NULL REFERENCES agent_versions (id),
    margin                     DOUBLE PRECISION NOT NULL CHECK (margin >= 0),
    judge_agreement            DOUBLE PRECISION NOT NULL
                               CHECK (judge_agreement >= 0 AND judge_agreement <= 1),
    created_at                 BIGINT NOT NULL,
    UNIQUE (chosen_response_id, rejected_response_id),
    CHECK (chosen_response_id <> rejected_response_id)
);
CREATE INDEX preference_pairs_space_time ON preference_pairs (space_id, created_at);
