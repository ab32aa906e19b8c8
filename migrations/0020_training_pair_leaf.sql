-- Which leaf layout a training run's pairs root uses, and so how its pairs were
-- trained (issue 21): 2 (runs made before this column) trained every pair under the
-- chosen answer's prompt and ended every answer with the end-of-turn token; 3 trains
-- each pair under the prompt the run's own agent saw in that round and leaves an
-- answer that was cut off at the token limit open, and its leaves commit to both.
ALTER TABLE training_runs ADD COLUMN pair_leaf BIGINT NOT NULL DEFAULT 2;

-- A run with a validation share measures the loss on its held-out pairs after each
-- pass over the training pairs; the other steps have none.
ALTER TABLE training_metrics ADD COLUMN validation_loss DOUBLE PRECISION;
