-- Chain transactions (keyed by an idempotency key so a retry never sends twice)
-- and the proof-of-learning records they anchored.
CREATE TABLE chain_transactions (
    id               ID_PK,
    idempotency_key  TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    tx_hash          TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'failed')),
    block_number     BIGINT,
    error            TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE pol_records (
    id                 ID_PK,
    record_id          BIGINT NOT NULL UNIQUE,
    agent_id           BIGINT NOT NULL REFERENCES agents (id),
    training_run_id    BIGINT NOT NULL UNIQUE REFERENCES training_runs (id),
    parent_hash        TEXT NOT NULL,
    new_hash           TEXT NOT NULL,
    pairs_root         TEXT NOT NULL,
    results_root       TEXT NOT NULL,
    hyperparams_hash   TEXT NOT NULL,
    trainer            TEXT NOT NULL,
    block_number       BIGINT NOT NULL,
    chain_tx_id        BIGINT REFERENCES chain_transactions (id),
    created_at         BIGINT NOT NULL
);
