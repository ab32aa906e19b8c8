-- Meta-prompts stay private: each response keeps the round's text as its seat saw it
-- without the meta-prompt (what public exports show), each pair copies its chosen
-- side's, and an owner may opt an agent's exact prompts into public exports.
ALTER TABLE responses ADD COLUMN task_prompt TEXT NOT NULL DEFAULT '';
ALTER TABLE preference_pairs ADD COLUMN task_prompt TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN public_prompt BIGINT NOT NULL DEFAULT 0;
