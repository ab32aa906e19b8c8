-- Users are keyed by the wallet address they sign in with (lower-case 0x hex).
CREATE TABLE users (
    id              ID_PK,
    wallet_address  TEXT NOT NULL UNIQUE
                    CHECK (length(wallet_address) = 42 AND substr(wallet_address, 1, 2) = '0x'),
    display_name    TEXT,
    created_at      BIGINT NOT NULL
);
