-- Money. Every balance movement is one row of the append-only journal; `balances`
-- is its running total per user, updated in the same transaction. A match is
-- settled (or refunded) at most once: `match_settlements.match_id` is unique.
CREATE TABLE match_settlements (
    id            ID_PK,
    match_id      BIGINT NOT NULL UNIQUE REFERENCES matches (id),
    outcome       TEXT NOT NULL CHECK (outcome IN ('settled', 'refunded')),
    pot_wei       TEXT NOT NULL WEI_CHECK(pot_wei),
    treasury_wei  TEXT NOT NULL WEI_CHECK(treasury_wei),
    result_root   TEXT,
    chain_tx_id   BIGINT REFERENCES chain_transactions (id),
    created_at    BIGINT NOT NULL
);

CREATE TABLE payouts (
    id          ID_PK,
    match_id    BIGINT NOT NULL REFERENCES matches (id),
    entry_id    BIGINT NOT NULL REFERENCES entries (id),
    place       BIGINT NOT NULL CHECK (place >= 1),
    amount_wei  TEXT NOT NULL WEI_CHECK(amount_wei),
    UNIQUE (match_id, entry_id)
);

CREATE TABLE ledger_journal (
    id               ID_PK,
    user_id          BIGINT REFERENCES users (id),
    account          TEXT NOT NULL CHECK (account IN ('available', 'locked', 'treasury')),
    kind             TEXT NOT NULL
                     CHECK (kind IN ('deposit', 'withdrawal', 'lock', 'payout', 'refund', 'treasury')),
    direction        TEXT NOT NULL CHECK (direction IN ('credit', 'debit')),
    amount_wei       TEXT NOT NULL WEI_CHECK(amount_wei),
    match_id         BIGINT REFERENCES matches (id),
    entry_id         BIGINT REFERENCES entries (id),
    chain_tx_id      BIGINT REFERENCES chain_transactions (id),
    idempotency_key  TEXT NOT NULL UNIQUE,
    created_at       BIGINT NOT NULL
);
CREATE INDEX ledger_journal_user ON ledger_journal (user_id, id);

CREATE TABLE balances (
    user_id        BIGINT PRIMARY KEY REFERENCES users (id),
    available_wei  TEXT NOT NULL WEI_CHECK(available_wei),
    locked_wei     TEXT NOT NULL WEI_CHECK(locked_wei),
    updated_at     BIGINT NOT NULL
);
