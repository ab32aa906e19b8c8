-- Spaces (rulebooks) and their fee tiers. Fees are wei as canonical decimal text.
CREATE TABLE spaces (
    id            ID_PK,
    slug          TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    rulebook      TEXT NOT NULL,
    version_hash  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE fee_tiers (
    id        ID_PK,
    space_id  BIGINT NOT NULL REFERENCES spaces (id),
    name      TEXT NOT NULL,
    fee_wei   TEXT NOT NULL WEI_CHECK(fee_wei),
    UNIQUE (space_id, name)
);
