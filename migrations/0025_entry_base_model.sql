-- Agents choose their base model (issue 21): each entry that played records the sha256
-- of the base model its seat ran on, written with the match's result, so a replay runs
-- the seat on the same weights (or says the weights changed). NULL for entries settled
-- before this, and for entries that did not play.
ALTER TABLE entries ADD COLUMN base_model_sha256 TEXT;
