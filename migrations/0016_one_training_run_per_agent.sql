-- At most one training run in progress per agent, whichever worker runs it: a second
-- worker that finds an agent's training due while another trains it gets a unique
-- violation and moves on. Runs left 'running' by stopped processes (all but each
-- agent's newest) are closed as failed first, so the index can be built.
UPDATE training_runs
   SET status = 'failed',
       finished_at = started_at,
       error = 'interrupted: superseded by a later run before it finished'
 WHERE status = 'running'
   AND id NOT IN (SELECT MAX(id) FROM training_runs WHERE status = 'running' GROUP BY agent_id);
CREATE UNIQUE INDEX training_runs_one_running ON training_runs (agent_id) WHERE status = 'running';
