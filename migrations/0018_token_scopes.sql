-- API tokens carry scopes (read, play, withdraw) and may expire. Tokens made before
-- keep every scope and no expiry, as they had.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,play,withdraw';
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
