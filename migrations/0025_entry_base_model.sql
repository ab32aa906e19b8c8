-- Agents choose their base model (issue 21): each entry that played records the sha256
-- of the base model its seat ran on, written with the match's result, so a replay runs
-- the seat on the same weights (or says the weights changed). NULL for entries settled
-- before this, and for entries that did not play.
ALTER TABLE entries ADD COLUMN base_model_sha256 TEXT;

-- Until now every agent played on SmolLM2-135M-Instruct whatever its `base_model` said
-- (the label was free text nothing read). Name that model for every existing agent, so
-- each keeps playing, training and replaying on the weights it always had.
UPDATE agents SET base_model = 'smollm2-135m-instruct';
