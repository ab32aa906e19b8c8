//! Agents and their immutable versions.

use serde::{Deserialize, Serialize};

use crate::{Agent, AgentVersion, Error, Result, Store, now_ms, on_pool, on_tx};

/// What a new agent version holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAgentVersion {
    /// The meta-prompt.
    pub system_prompt: String,
    /// Sampling settings, JSON.
    pub sampling: serde_json::Value,
    /// Training settings, JSON.
    pub training: serde_json::Value,
    /// sha256 of the adapter, or `None` for the bare base model.
    pub adapter_hash: Option<String>,
}

impl Store {
    /// Opts an agent's exact prompts into public exports (`true`) or out (`false`).
    pub async fn set_public_prompt(&self, agent_id: i64, public: bool) -> Result<Agent> {
        on_pool!(self, |pool| sqlx::query_as(
            "UPDATE agents SET public_prompt = $2 WHERE id = $1 RETURNING *"
        )
        .bind(agent_id)
        .bind(i64::from(public))
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "agent",
            id: agent_id.to_string(),
        })
    }

    /// Creates an agent with its first version, in one transaction.
    pub async fn create_agent(
        &self,
        owner_id: i64,
        name: &str,
        base_model: &str,
        first: &NewAgentVersion,
    ) -> Result<(Agent, AgentVersion)> {
        if name.trim().is_empty() {
            return Err(Error::Invalid {
                field: "name",
                reason: "must not be empty".into(),
            });
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        let (agent, version) = on_tx!(&mut tx, |c| {
            let agent: Agent = sqlx::query_as(
                "INSERT INTO agents (owner_id, name, base_model, created_at)
                 VALUES ($1, $2, $3, $4) RETURNING *",
            )
            .bind(owner_id)
            .bind(name)
            .bind(base_model)
            .bind(now)
            .fetch_one(&mut *c)
            .await?;
            let version: AgentVersion = sqlx::query_as(
                "INSERT INTO agent_versions
                   (agent_id, version, parent_version_id, system_prompt, sampling, training,
                    adapter_hash, created_at)
                 VALUES ($1, 1, NULL, $2, $3, $4, $5, $6) RETURNING *",
            )
            .bind(agent.id)
            .bind(&first.system_prompt)
            .bind(first.sampling.to_string())
            .bind(first.training.to_string())
            .bind(&first.adapter_hash)
            .bind(now)
            .fetch_one(&mut *c)
            .await?;
            (agent, version)
        });
        tx.commit().await?;
        Ok((agent, version))
    }

    /// Stores the version a training run produced: the new adapter on top of the
    /// agent's *latest* meta-prompt, sampling and training settings (an edit the owner
    /// saved while the run trained is kept, not replaced by the settings the run
    /// started from), with `parent_version_id` the version whose adapter was trained.
    /// The copy and the insert are one statement, so a concurrent edit either comes
    /// before it (and is copied) or conflicts and is retried.
    pub async fn add_trained_version(
        &self,
        agent_id: i64,
        parent_version_id: i64,
        adapter_hash: &str,
    ) -> Result<AgentVersion> {
        self.check_parent(agent_id, parent_version_id).await?;
        let mut attempt = 0;
        loop {
            let inserted = on_pool!(self, |pool| sqlx::query_as(
                "INSERT INTO agent_versions
                   (agent_id, version, parent_version_id, system_prompt, sampling, training,
                    adapter_hash, created_at)
                 SELECT l.agent_id, l.version + 1, $2, l.system_prompt, l.sampling, l.training,
                        $3, $4
                 FROM agent_versions l
                 WHERE l.agent_id = $1
                   AND l.version = (SELECT MAX(version) FROM agent_versions WHERE agent_id = $1)
                 RETURNING *",
            )
            .bind(agent_id)
            .bind(parent_version_id)
            .bind(adapter_hash)
            .bind(now_ms())
            .fetch_one(pool)
            .await)
            .map_err(|e| Error::on_unique(e, format!("a concurrent version of agent {agent_id}")));
            match inserted {
                Err(Error::Duplicate { .. }) if attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    /// Stores the version of a training run whose adapter the regression gate held
    /// back: the trained version (copying the agent's latest settings, as
    /// [`Store::add_trained_version`] does) with `held_back` saying why, and after it
    /// a version with the same settings that restores the adapter of
    /// `parent_version_id`, which the agent plays from then on. Both land in one
    /// transaction, so no match ever seats the held-back version. Returns both, the
    /// held-back one first.
    pub async fn add_held_back_version(
        &self,
        agent_id: i64,
        parent_version_id: i64,
        adapter_hash: &str,
        reason: &str,
    ) -> Result<(AgentVersion, AgentVersion)> {
        let parent = self.agent_version(parent_version_id).await?;
        if parent.agent_id != agent_id {
            return Err(Error::Invalid {
                field: "parent_version_id",
                reason: format!("version {parent_version_id} belongs to another agent"),
            });
        }
        let mut attempt = 0;
        loop {
            let now = now_ms();
            let mut tx = self.begin().await?;
            let inserted: Result<(AgentVersion, AgentVersion)> = async {
                Ok(on_tx!(&mut tx, |c| {
                    let held: AgentVersion = sqlx::query_as(
                        "INSERT INTO agent_versions
                           (agent_id, version, parent_version_id, system_prompt, sampling,
                            training, adapter_hash, created_at, held_back)
                         SELECT l.agent_id, l.version + 1, $2, l.system_prompt, l.sampling,
                                l.training, $3, $4, $5
                         FROM agent_versions l
                         WHERE l.agent_id = $1
                           AND l.version = (SELECT MAX(version) FROM agent_versions
                                            WHERE agent_id = $1)
                         RETURNING *",
                    )
                    .bind(agent_id)
                    .bind(parent_version_id)
                    .bind(adapter_hash)
                    .bind(now)
                    .bind(reason)
                    .fetch_one(&mut *c)
                    .await?;
                    let restored: AgentVersion = sqlx::query_as(
                        "INSERT INTO agent_versions
                           (agent_id, version, parent_version_id, system_prompt, sampling,
                            training, adapter_hash, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                    )
                    .bind(agent_id)
                    .bind(held.version + 1)
                    .bind(held.id)
                    .bind(&held.system_prompt)
                    .bind(&held.sampling)
                    .bind(&held.training)
                    .bind(&parent.adapter_hash)
                    .bind(now)
                    .fetch_one(&mut *c)
                    .await?;
                    (held, restored)
                }))
            }
            .await;
            let inserted = match inserted {
                Ok(both) => tx.commit().await.map(|()| both),
                Err(e) => Err(e),
            }
            .map_err(|e| match e {
                Error::Database(db) => {
                    Error::on_unique(db, format!("a concurrent version of agent {agent_id}"))
                }
                other => other,
            });
            match inserted {
                Err(Error::Duplicate { .. }) if attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    /// Refuses a parent version that belongs to another agent.
    async fn check_parent(&self, agent_id: i64, parent_version_id: i64) -> Result<()> {
        let parent = self.agent_version(parent_version_id).await?;
        if parent.agent_id != agent_id {
            return Err(Error::Invalid {
                field: "parent_version_id",
                reason: format!("version {parent_version_id} belongs to another agent"),
            });
        }
        Ok(())
    }

    /// Appends a version derived from `parent_version_id` (the next number).
    pub async fn add_agent_version(
        &self,
        agent_id: i64,
        parent_version_id: i64,
        new: &NewAgentVersion,
    ) -> Result<AgentVersion> {
        self.check_parent(agent_id, parent_version_id).await?;
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO agent_versions
               (agent_id, version, parent_version_id, system_prompt, sampling, training,
                adapter_hash, created_at)
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6, $7
             FROM agent_versions WHERE agent_id = $1
             RETURNING *",
        )
        .bind(agent_id)
        .bind(parent_version_id)
        .bind(&new.system_prompt)
        .bind(new.sampling.to_string())
        .bind(new.training.to_string())
        .bind(&new.adapter_hash)
        .bind(now_ms())
        .fetch_one(pool)
        .await)
        .map_err(|e| Error::on_unique(e, format!("a concurrent version of agent {agent_id}")))
    }

    /// The agent with this id.
    pub async fn agent(&self, id: i64) -> Result<Agent> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM agents WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "agent",
            id: id.to_string(),
        })
    }

    /// Ids of every agent not archived, oldest first.
    pub async fn active_agent_ids(&self) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id FROM agents WHERE archived_at IS NULL ORDER BY id"
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The owner's agents, archived ones included, oldest first.
    pub async fn agents_by_owner(&self, owner_id: i64) -> Result<Vec<Agent>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM agents WHERE owner_id = $1 ORDER BY id"
        )
        .bind(owner_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Marks an agent archived; it keeps its history but enters no new matches.
    pub async fn archive_agent(&self, id: i64) -> Result<Agent> {
        on_pool!(self, |pool| sqlx::query_as(
            "UPDATE agents SET archived_at = COALESCE(archived_at, $2) WHERE id = $1 RETURNING *"
        )
        .bind(id)
        .bind(now_ms())
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "agent",
            id: id.to_string(),
        })
    }

    /// One agent version.
    pub async fn agent_version(&self, id: i64) -> Result<AgentVersion> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM agent_versions WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "agent version",
            id: id.to_string(),
        })
    }

    /// Every version of an agent, oldest first.
    pub async fn agent_versions(&self, agent_id: i64) -> Result<Vec<AgentVersion>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM agent_versions WHERE agent_id = $1 ORDER BY version"
        )
        .bind(agent_id)
        .fetch_all(pool)
        .await)?)
    }

    /// The agent's newest version.
    pub async fn latest_agent_version(&self, agent_id: i64) -> Result<AgentVersion> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM agent_versions WHERE agent_id = $1 ORDER BY version DESC LIMIT 1"
        )
        .bind(agent_id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "version of agent",
            id: agent_id.to_string(),
        })
    }
}
