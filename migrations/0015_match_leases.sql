-- A lease on an unfinished match: which process holds it (the server that forms it
-- and locks its fees, then the worker that plays it) and until when (ms). The holder
-- renews it while it works; only a match whose lease has expired is refunded or
-- re-queued by another process's reconciliation. A match with no lease was made by a
-- single-process runner, which reconciles everything it left on its own start-up.
ALTER TABLE matches ADD COLUMN lease_owner TEXT;
ALTER TABLE matches ADD COLUMN lease_expires_at BIGINT;
CREATE INDEX matches_lease ON matches (status, lease_expires_at);
