-- The regression gate (issue 21): before a trained adapter is played it meets its
-- parent on held-out tasks. The run keeps what the gate found (JSON: the Spaces, the
-- matches, wins, draws, losses and the win rate's interval, and the decision); a
-- version that lost significantly keeps its place in the lineage with the reason it
-- is not played, and the agent plays on from a version that restores the parent's
-- adapter.
ALTER TABLE training_runs ADD COLUMN evaluation TEXT;
ALTER TABLE agent_versions ADD COLUMN held_back TEXT;
