-- Indexes for what the web pages list: a user's entries, an agent's entries and
-- training runs, newest matches first, and the rating changes of one match.
CREATE INDEX entries_user ON entries (user_id, id);
CREATE INDEX entries_agent ON entries (agent_id, match_id);
CREATE INDEX training_runs_agent ON training_runs (agent_id, id);
CREATE INDEX rating_history_match ON rating_history (match_id);
