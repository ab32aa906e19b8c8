-- Agents and their immutable versions. A version carries the meta-prompt, the
-- sampling and training settings (JSON), and the adapter it runs with.
CREATE TABLE agents (
    id            ID_PK,
    owner_id      BIGINT NOT NULL REFERENCES users (id),
    name          TEXT NOT NULL,
    base_model    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    archived_at   BIGINT
);
CREATE INDEX agents_owner ON agents (owner_id);

CREATE TABLE agent_versions (
    id                 ID_PK,
    agent_id           BIGINT NOT NULL REFERENCES agents (id),
    version            BIGINT NOT NULL CHECK (version >= 1),
    parent_version_id  BIGINT REFERENCES agent_versions (id),
    system_prompt      TEXT NOT NULL,
    sampling           TEXT NOT NULL,
    training           TEXT NOT NULL,
    adapter_hash       TEXT,
    created_at         BIGINT NOT NULL,
    UNIQUE (agent_id, version)
);
