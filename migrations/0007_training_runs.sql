-- DPO training runs: which pairs they used, in order, and their per-step metrics.
CREATE TABLE training_runs (
    id                 ID_PK,
    agent_id           BIGINT NOT NULL REFERENCES agents (id),
    parent_version_id  BIGINT NOT NULL REFERENCES agent_versions (id),
    new_version_id     BIGINT REFERENCES agent_versions (id),
    status             TEXT NOT NULL
                       CHECK (status IN ('running', 'succeeded', 'failed')),
    hyperparams        TEXT NOT NULL,
    hyperparams_hash   TEXT NOT NULL,
    pairs_root         TEXT NOT NULL,
    results_root       TEXT NOT NULL,
    started_at         BIGINT NOT NULL,
    finished_at        BIGINT,
    error              TEXT
);

CREATE TABLE training_run_pairs (
    training_run_id  BIGINT NOT NULL REFERENCES training_runs (id),
    position         BIGINT NOT NULL CHECK (position >= 0),
    pair_id          BIGINT NOT NULL REFERENCES preference_pairs (id),
    PRIMARY KEY (training_run_id, position),
    UNIQUE (training_run_id, pair_id)
);

CREATE TABLE training_metrics (
    training_run_id   BIGINT NOT NULL REFERENCES training_runs (id),
    step              BIGINT NOT NULL CHECK (step >= 0),
    loss              DOUBLE PRECISION NOT NULL,
    reward_accuracy   DOUBLE PRECISION NOT NULL,
    chosen_reward     DOUBLE PRECISION NOT NULL,
    rejected_reward   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (training_run_id, step)
);
