-- People's votes on finished rounds (issue 22): a signed-in spectator is shown two
-- answers of one round that the judge panel paired (order randomised, names hidden)
-- and says which is better. One vote per account per round; never on a match where
-- the voter owns a seat. `agrees` records whether the panel chose the same answer.
CREATE TABLE human_votes (
    id                    ID_PK,
    pair_id               BIGINT NOT NULL REFERENCES preference_pairs (id),
    match_id              BIGINT NOT NULL REFERENCES matches (id),
    round_id              BIGINT NOT NULL REFERENCES rounds (id),
    space_id              BIGINT NOT NULL REFERENCES spaces (id),
    user_id               BIGINT NOT NULL REFERENCES users (id),
    chosen_response_id    BIGINT NOT NULL REFERENCES responses (id),
    rejected_response_id  BIGINT NOT NULL REFERENCES responses (id),
    agrees                BIGINT NOT NULL CHECK (agrees IN (0, 1)),
    created_at            BIGINT NOT NULL,
    UNIQUE (round_id, user_id),
    CHECK (chosen_response_id <> rejected_response_id)
);
CREATE INDEX human_votes_space ON human_votes (space_id, id);
