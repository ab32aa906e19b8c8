//! Spaces (rulebooks as stored) and their fee tiers.

use crate::{Error, FeeTier, Result, Space, Store, Wei, now_ms, on_pool, on_tx};

/// A Space to store: its identity, its rulebook text and its fee tiers.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSpace<'a> {
    /// URL-safe unique name.
    pub slug: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Description.
    pub description: &'a str,
    /// The rulebook source (TOML).
    pub rulebook: &'a str,
    /// Hash of the rulebook.
    pub version_hash: &'a str,
    /// (tier name, fee) pairs.
    pub fee_tiers: &'a [(&'a str, Wei)],
}

impl Store {
    /// Creates or updates a Space by slug, with its fee tiers, in one transaction.
    pub async fn upsert_space(&self, new: &NewSpace<'_>) -> Result<(Space, Vec<FeeTier>)> {
        if new.fee_tiers.is_empty() {
            return Err(Error::Invalid {
                field: "fee_tiers",
                reason: "a Space needs at least one fee tier".into(),
            });
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        let space: Space = on_tx!(&mut tx, |c| {
            sqlx::query_as(
            "INSERT INTO spaces (slug, name, description, rulebook, version_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (slug) DO UPDATE SET
               name = excluded.name, description = excluded.description,
               rulebook = excluded.rulebook, version_hash = excluded.version_hash,
               updated_at = excluded.updated_at
             RETURNING *",
        )
        .bind(new.slug)
        .bind(new.name)
        .bind(new.description)
        .bind(new.rulebook)
        .bind(new.version_hash)
        .bind(now)
        .fetch_one(&mut *c)
        .await
        })?;
        let mut tiers = Vec::with_capacity(new.fee_tiers.len());
        for &(name, fee) in new.fee_tiers {
            let tier: FeeTier = on_tx!(&mut tx, |c| sqlx::query_as(
                "INSERT INTO fee_tiers (space_id, name, fee_wei) VALUES ($1, $2, $3)
                 ON CONFLICT (space_id, name) DO UPDATE SET fee_wei = excluded.fee_wei
                 RETURNING *",
            )
            .bind(space.id)
            .bind(name)
            .bind(fee)
            .fetch_one(&mut *c)
            .await)?;
            tiers.push(tier);
        }
        tx.commit().await?;
        Ok((space, tiers))
    }

    /// The Space with this slug.
    pub async fn space_by_slug(&self, slug: &str) -> Result<Space> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM spaces WHERE slug = $1"
        )
        .bind(slug)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "space",
            id: slug.to_string(),
        })
    }

    /// Every Space, by slug.
    pub async fn spaces(&self) -> Result<Vec<Space>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM spaces ORDER BY slug"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// A Space's fee tiers, cheapest first.
    pub async fn fee_tiers(&self, space_id: i64) -> Result<Vec<FeeTier>> {
        let mut tiers: Vec<FeeTier> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM fee_tiers WHERE space_id = $1 ORDER BY id"
        )
        .bind(space_id)
        .fetch_all(pool)
        .await)?;
        tiers.sort_by_key(|t| (t.fee_wei, t.id));
        Ok(tiers)
    }

    /// One fee tier.
    pub async fn fee_tier(&self, id: i64) -> Result<FeeTier> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM fee_tiers WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?
        .ok_or(Error::NotFound {
            what: "fee tier",
            id: id.to_string(),
        })
    }
}
