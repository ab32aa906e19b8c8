//! Money: deposits, withdrawals, entry fees locked in escrow, settlement and refunds.
//!
//! Every movement is a line of the append-only journal, and the same transaction
//! moves the user's running balance, so the two never disagree. Each line has a
//! unique idempotency key: replaying an operation fails instead of paying twice.
//! A match is settled or refunded once, enforced by `match_settlements.match_id`.

use crate::{
    AutoEntry, Balance, Entry, Error, FeeTier, JournalEntry, Result, Store, Tx, Wei, match_status,
    now_ms, on_pool, on_tx,
};

/// One journal line to post.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JournalLine {
    /// The user, or `None` for the treasury.
    pub user_id: Option<i64>,
    /// `available`, `locked` or `treasury`.
    pub account: &'static str,
    /// What kind of movement.
    pub kind: &'static str,
    /// Credit (adds) or debit (takes away).
    pub credit: bool,
    /// The amount.
    pub amount: Wei,
    /// The match, if any.
    pub match_id: Option<i64>,
    /// The entry, if any.
    pub entry_id: Option<i64>,
    /// The chain transaction behind it.
    pub chain_tx_id: Option<i64>,
    /// Unique key of this movement.
    pub idempotency_key: String,
}

/// One payout of a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payout {
    /// The entry paid.
    pub entry_id: i64,
    /// Its final place (1 = winner).
    pub place: i64,
    /// The amount paid to the entry's owner.
    pub amount: Wei,
}

/// A match's settlement: payouts, the treasury's remainder and the result root.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// The match.
    pub match_id: i64,
    /// One payout per entry (zero amounts allowed).
    pub payouts: Vec<Payout>,
    /// What the treasury keeps; payouts plus this must equal the pot.
    pub treasury: Wei,
    /// Merkle root of the match's results (hex).
    pub result_root: String,
    /// Hash of the match result, for replays.
    pub result_hash: String,
    /// The chain transaction that settled the escrow.
    pub chain_tx_id: Option<i64>,
}

impl Tx {
    /// Takes the row lock on the user's balance (creating it at zero), then reads it.
    /// Writing first means concurrent movements of one user queue up instead of
    /// deadlocking, on both engines.
    async fn lock_balance(&mut self, user_id: i64) -> Result<Balance> {
        on_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO balances (user_id, available_wei, locked_wei, updated_at)
                 VALUES ($1, '0', '0', $2)
                 ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at",
            )
            .bind(user_id)
            .bind(now_ms())
            .execute(&mut *c)
            .await?;
            let (available_wei, locked_wei): (Wei, Wei) =
                sqlx::query_as("SELECT available_wei, locked_wei FROM balances WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *c)
                    .await?;
            Ok(Balance {
                available_wei,
                locked_wei,
            })
        })
    }

    /// Writes the user's new balance.
    async fn store_balance(&mut self, user_id: i64, b: Balance) -> Result<()> {
        on_tx!(self, |c| sqlx::query(
            "UPDATE balances SET available_wei = $2, locked_wei = $3, updated_at = $4
             WHERE user_id = $1"
        )
        .bind(user_id)
        .bind(b.available_wei)
        .bind(b.locked_wei)
        .bind(now_ms())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Appends one journal line.
    async fn append(&mut self, line: &JournalLine) -> Result<()> {
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO ledger_journal
               (user_id, account, kind, direction, amount_wei, match_id, entry_id, chain_tx_id,
                idempotency_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .bind(line.user_id)
        .bind(line.account)
        .bind(line.kind)
        .bind(if line.credit { "credit" } else { "debit" })
        .bind(line.amount)
        .bind(line.match_id)
        .bind(line.entry_id)
        .bind(line.chain_tx_id)
        .bind(&line.idempotency_key)
        .bind(now_ms())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| Error::on_unique(e, format!("journal line {}", line.idempotency_key)))?;
        Ok(())
    }

    /// Whether a journal line with this idempotency key exists.
    async fn posted(&mut self, key: &str) -> Result<bool> {
        let (found,): (i64,) = on_tx!(self, |c| sqlx::query_as(
            "SELECT COUNT(*) FROM ledger_journal WHERE idempotency_key = $1"
        )
        .bind(key)
        .fetch_one(&mut *c)
        .await)?;
        Ok(found > 0)
    }

    /// Posts user lines (applied to their balances, which must stay >= 0) and
    /// treasury lines. Users are locked in id order so two transactions never wait
    /// on each other. A line whose idempotency key is already in the journal makes
    /// the whole post a [`Error::Duplicate`], checked once the users are locked, so
    /// that of two posts racing with one key the second sees the first's line (and
    /// never a balance the first already moved).
    async fn post(&mut self, lines: &[JournalLine]) -> Result<()> {
        // A zero amount moves nothing, so it leaves no line (free tiers).
        let lines: Vec<&JournalLine> = lines.iter().filter(|l| l.amount > Wei::ZERO).collect();
        let mut users: Vec<i64> = lines.iter().filter_map(|l| l.user_id).collect();
        users.sort_unstable();
        users.dedup();
        let mut locked = Vec::with_capacity(users.len());
        for user_id in users {
            locked.push((user_id, self.lock_balance(user_id).await?));
        }
        for line in &lines {
            if self.posted(&line.idempotency_key).await? {
                return Err(Error::Duplicate {
                    what: format!("journal line {}", line.idempotency_key),
                });
            }
        }
        for (user_id, mut b) in locked {
            for line in lines.iter().filter(|l| l.user_id == Some(user_id)) {
                let (slot, name) = match line.account {
                    "available" => (&mut b.available_wei, "available"),
                    "locked" => (&mut b.locked_wei, "locked"),
                    other => {
                        return Err(Error::Invalid {
                            field: "account",
                            reason: format!("{other} is not a user account"),
                        });
                    }
                };
                *slot = if line.credit {
                    slot.checked_add(line.amount).ok_or(Error::Invalid {
                        field: "amount_wei",
                        reason: "balance overflow".into(),
                    })?
                } else {
                    slot.checked_sub(line.amount)
                        .ok_or(Error::InsufficientBalance {
                            user_id,
                            account: name,
                            have: *slot,
                            need: line.amount,
                        })?
                };
            }
            self.store_balance(user_id, b).await?;
        }
        for line in lines {
            self.append(line).await?;
        }
        Ok(())
    }
}

impl Store {
    /// Credits a confirmed on-chain deposit; `idempotency_key` is typically the tx hash.
    pub async fn deposit(
        &self,
        user_id: i64,
        amount: Wei,
        idempotency_key: &str,
    ) -> Result<Balance> {
        self.move_available(user_id, amount, true, "deposit", idempotency_key)
            .await
    }

    /// Debits a withdrawal; fails without writing anything if the balance is short.
    pub async fn withdraw(
        &self,
        user_id: i64,
        amount: Wei,
        idempotency_key: &str,
    ) -> Result<Balance> {
        self.move_available(user_id, amount, false, "withdrawal", idempotency_key)
            .await
    }

    pub(crate) async fn move_available(
        &self,
        user_id: i64,
        amount: Wei,
        credit: bool,
        kind: &'static str,
        key: &str,
    ) -> Result<Balance> {
        let mut tx = self.begin().await?;
        tx.post(&[JournalLine {
            user_id: Some(user_id),
            account: "available",
            kind,
            credit,
            amount,
            match_id: None,
            entry_id: None,
            chain_tx_id: None,
            idempotency_key: format!("{kind}:{key}"),
        }])
        .await?;
        tx.commit().await?;
        self.balance(user_id).await
    }

    /// Queues an entry and locks its fee from the user's available balance, in one
    /// transaction: either both happen or neither does.
    pub async fn enter(
        &self,
        user_id: i64,
        agent_version_id: i64,
        fee_tier_id: i64,
    ) -> Result<Entry> {
        let version = self.agent_version(agent_version_id).await?;
        let agent = self.agent(version.agent_id).await?;
        if agent.owner_id != user_id {
            return Err(Error::Invalid {
                field: "agent_version_id",
                reason: format!("agent {} is not owned by user {user_id}", agent.id),
            });
        }
        if agent.archived_at.is_some() {
            return Err(Error::Invalid {
                field: "agent_version_id",
                reason: format!("agent {} is archived", agent.id),
            });
        }
        let tier = self.fee_tier(fee_tier_id).await?;
        let mut tx = self.begin().await?;
        let entry = tx
            .insert_entry(user_id, agent.id, agent_version_id, &tier, false)
            .await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Sets (or replaces) an agent's auto-entry rule for a fee tier, keeping what it
    /// has already spent.
    pub async fn set_auto_entry(
        &self,
        agent_id: i64,
        fee_tier_id: i64,
        cap: Wei,
        enabled: bool,
    ) -> Result<AutoEntry> {
        on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO auto_entries (agent_id, fee_tier_id, cap_wei, spent_wei, enabled, updated_at)
             VALUES ($1, $2, $3, '0', $4, $5)
             ON CONFLICT (agent_id, fee_tier_id) DO UPDATE SET
               cap_wei = excluded.cap_wei, enabled = excluded.enabled, updated_at = excluded.updated_at
             RETURNING *"
        )
        .bind(agent_id)
        .bind(fee_tier_id)
        .bind(cap)
        .bind(i64::from(enabled))
        .bind(now_ms())
        .fetch_one(pool)
        .await)
        .map_err(Error::from)
    }

    /// Enabled auto-entry rules, for the matchmaker to act on.
    pub async fn auto_entries(&self) -> Result<Vec<AutoEntry>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM auto_entries WHERE enabled = 1 ORDER BY agent_id, fee_tier_id"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Enters the agent's latest version under its auto-entry rule, if the fee fits
    /// under the cap; `Ok(None)` when it would exceed the cap. The cap check, the
    /// spend, the entry and the fee lock are one transaction, so concurrent calls can
    /// never spend past the cap.
    pub async fn auto_enter(&self, agent_id: i64, fee_tier_id: i64) -> Result<Option<Entry>> {
        let agent = self.agent(agent_id).await?;
        if agent.archived_at.is_some() {
            return Ok(None);
        }
        let version = self.latest_agent_version(agent_id).await?;
        let tier = self.fee_tier(fee_tier_id).await?;
        let mut tx = self.begin().await?;
        // Writing first takes the row lock, so concurrent auto-entries queue here.
        let rule: Option<AutoEntry> = on_tx!(&mut tx, |c| sqlx::query_as(
            "UPDATE auto_entries SET updated_at = $3
             WHERE agent_id = $1 AND fee_tier_id = $2 AND enabled = 1 RETURNING *"
        )
        .bind(agent_id)
        .bind(fee_tier_id)
        .bind(now_ms())
        .fetch_optional(&mut *c)
        .await)?;
        let Some(rule) = rule else {
            return Ok(None);
        };
        let spent = match rule.spent_wei.checked_add(tier.fee_wei) {
            Some(s) if s <= rule.cap_wei => s,
            _ => return Ok(None),
        };
        on_tx!(&mut tx, |c| sqlx::query(
            "UPDATE auto_entries SET spent_wei = $3 WHERE agent_id = $1 AND fee_tier_id = $2"
        )
        .bind(agent_id)
        .bind(fee_tier_id)
        .bind(spent)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
        let entry = tx
            .insert_entry(agent.owner_id, agent_id, version.id, &tier, true)
            .await?;
        tx.commit().await?;
        Ok(Some(entry))
    }
}

impl Tx {
    /// Inserts a queued entry and locks its fee.
    async fn insert_entry(
        &mut self,
        user_id: i64,
        agent_id: i64,
        agent_version_id: i64,
        tier: &FeeTier,
        auto: bool,
    ) -> Result<Entry> {
        // One queued entry per agent per (Space, tier). Touching the agent's row first
        // takes its write lock, so two concurrent entries of one agent queue here and
        // the second sees the first.
        let queued: i64 = on_tx!(self, |c| {
            sqlx::query("UPDATE agents SET id = id WHERE id = $1")
                .bind(agent_id)
                .execute(&mut *c)
                .await?;
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM entries
                 WHERE agent_id = $1 AND fee_tier_id = $2 AND status = 'queued'",
            )
            .bind(agent_id)
            .bind(tier.id)
            .fetch_one(&mut *c)
            .await
        })?;
        if queued > 0 {
            return Err(Error::Duplicate {
                what: format!(
                    "a queued entry of agent {agent_id} in fee tier {} (one per agent per tier)",
                    tier.id
                ),
            });
        }
        let entry: Entry = on_tx!(self, |c| {
            sqlx::query_as(
            "INSERT INTO entries
               (user_id, agent_id, agent_version_id, space_id, fee_tier_id, fee_wei, status, created_at, auto_entry)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8) RETURNING *"
        )
        .bind(user_id)
        .bind(agent_id)
        .bind(agent_version_id)
        .bind(tier.space_id)
        .bind(tier.id)
        .bind(tier.fee_wei)
        .bind(now_ms())
        .bind(i64::from(auto))
        .fetch_one(&mut *c)
        .await
        })?;
        self.post(&lock_lines(&entry, "lock", false)).await?;
        Ok(entry)
    }
}

impl Store {
    /// Takes a still-queued entry out of the queue and unlocks its fee.
    pub async fn leave(&self, entry_id: i64) -> Result<Entry> {
        let mut tx = self.begin().await?;
        let entry: Entry = on_tx!(&mut tx, |c| sqlx::query_as(
            "UPDATE entries SET status = 'withdrawn' WHERE id = $1 AND status = 'queued' RETURNING *"
        )
        .bind(entry_id)
        .fetch_optional(&mut *c)
        .await)?
        .ok_or(Error::Invalid {
            field: "entry_id",
            reason: format!("entry {entry_id} is not queued"),
        })?;
        tx.post(&lock_lines(&entry, "refund", true)).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Settles a match in one transaction: the settlement row (at most one per match),
    /// the payouts, the journal, the entries and the match status. Payouts plus the
    /// treasury share must equal the pot exactly.
    pub async fn settle_match(&self, s: &Settlement) -> Result<()> {
        let plan = self.plan_settlement(s).await?;
        let mut tx = self.begin().await?;
        tx.apply_settlement(s, &plan).await?;
        tx.commit().await
    }

    /// Checks a settlement against the match's entries and prepares its journal.
    pub(crate) async fn plan_settlement(&self, s: &Settlement) -> Result<SettlementPlan> {
        let m = self.get_match(s.match_id).await?;
        if m.status != match_status::RUNNING && m.status != match_status::PENDING {
            return Err(Error::AlreadySettled {
                match_id: m.id,
                outcome: m.status.to_string(),
            });
        }
        let entries = self.match_entries(s.match_id).await?;
        let pot = Wei::sum(entries.iter().map(|e| e.fee_wei)).ok_or(Error::Invalid {
            field: "pot",
            reason: "overflow".into(),
        })?;
        let paid = Wei::sum(s.payouts.iter().map(|p| p.amount))
            .and_then(|p| p.checked_add(s.treasury))
            .ok_or(Error::Invalid {
                field: "payouts",
                reason: "overflow".into(),
            })?;
        if paid != pot {
            return Err(Error::Invalid {
                field: "payouts",
                reason: format!("payouts plus treasury are {paid} wei but the pot is {pot} wei"),
            });
        }
        let mut lines = Vec::new();
        for p in &s.payouts {
            let entry = entries
                .iter()
                .find(|e| e.id == p.entry_id)
                .ok_or(Error::Invalid {
                    field: "payouts",
                    reason: format!("entry {} is not in match {}", p.entry_id, s.match_id),
                })?;
            lines.push(JournalLine {
                user_id: Some(entry.user_id),
                account: "available",
                kind: "payout",
                credit: true,
                amount: p.amount,
                match_id: Some(s.match_id),
                entry_id: Some(entry.id),
                chain_tx_id: s.chain_tx_id,
                idempotency_key: format!("payout:entry:{}", entry.id),
            });
        }
        for e in &entries {
            lines.push(JournalLine {
                user_id: Some(e.user_id),
                account: "locked",
                kind: "payout",
                credit: false,
                amount: e.fee_wei,
                match_id: Some(s.match_id),
                entry_id: Some(e.id),
                chain_tx_id: s.chain_tx_id,
                idempotency_key: format!("release:entry:{}", e.id),
            });
        }
        lines.push(JournalLine {
            user_id: None,
            account: "treasury",
            kind: "treasury",
            credit: true,
            amount: s.treasury,
            match_id: Some(s.match_id),
            entry_id: None,
            chain_tx_id: s.chain_tx_id,
            idempotency_key: format!("treasury:match:{}", s.match_id),
        });
        Ok(SettlementPlan { pot, lines })
    }

    /// Refunds every entry of a match in one transaction, once.
    pub async fn refund_match(
        &self,
        match_id: i64,
        reason: &str,
        chain_tx_id: Option<i64>,
    ) -> Result<()> {
        let m = self.get_match(match_id).await?;
        let entries = self.match_entries(match_id).await?;
        let pot = Wei::sum(entries.iter().map(|e| e.fee_wei)).ok_or(Error::Invalid {
            field: "pot",
            reason: "overflow".into(),
        })?;
        let lines: Vec<JournalLine> = entries
            .iter()
            .flat_map(|e| {
                lock_lines(e, "refund", true).into_iter().map(|mut l| {
                    l.match_id = Some(match_id);
                    l.chain_tx_id = chain_tx_id;
                    l
                })
            })
            .collect();
        let mut tx = self.begin().await?;
        tx.claim_settlement(m.id, "refunded", pot, Wei::ZERO, None, chain_tx_id)
            .await?;
        tx.post(&lines).await?;
        // A match that never played costs no auto-entry rule its cap: give each rule
        // back what its entry spent.
        for e in entries.iter().filter(|e| e.auto_entry != 0) {
            let spent: Option<(Wei,)> = on_tx!(&mut tx, |c| sqlx::query_as(
                "SELECT spent_wei FROM auto_entries WHERE agent_id = $1 AND fee_tier_id = $2"
            )
            .bind(e.agent_id)
            .bind(e.fee_tier_id)
            .fetch_optional(&mut *c)
            .await)?;
            if let Some((spent,)) = spent {
                let back = spent.checked_sub(e.fee_wei).unwrap_or(Wei::ZERO);
                on_tx!(&mut tx, |c| {
                    sqlx::query(
                    "UPDATE auto_entries SET spent_wei = $3 WHERE agent_id = $1 AND fee_tier_id = $2"
                )
                .bind(e.agent_id)
                .bind(e.fee_tier_id)
                .bind(back)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected())
                })?;
            }
        }
        tx.finish_match(m.id, match_status::REFUNDED, None, Some(reason))
            .await?;
        tx.commit().await
    }

    /// The user's balances (zero if they never moved money).
    pub async fn balance(&self, user_id: i64) -> Result<Balance> {
        let row: Option<(Wei, Wei)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT available_wei, locked_wei FROM balances WHERE user_id = $1"
        )
        .bind(user_id)
        .fetch_optional(pool)
        .await)?;
        Ok(row
            .map(|(available_wei, locked_wei)| Balance {
                available_wei,
                locked_wei,
            })
            .unwrap_or_default())
    }

    /// The journal lines of one user (`Some`) or of the treasury (`None`), in order.
    pub async fn journal(&self, user_id: Option<i64>) -> Result<Vec<JournalEntry>> {
        Ok(match user_id {
            Some(u) => on_pool!(self, |pool| sqlx::query_as(
                "SELECT * FROM ledger_journal WHERE user_id = $1 ORDER BY id"
            )
            .bind(u)
            .fetch_all(pool)
            .await)?,
            None => on_pool!(self, |pool| sqlx::query_as(
                "SELECT * FROM ledger_journal WHERE user_id IS NULL ORDER BY id"
            )
            .fetch_all(pool)
            .await)?,
        })
    }

    /// The treasury's total, summed from the journal.
    pub async fn treasury_total(&self) -> Result<Wei> {
        let lines = self.journal(None).await?;
        Wei::sum(lines.iter().map(|l| l.amount_wei)).ok_or(Error::Invalid {
            field: "treasury",
            reason: "overflow".into(),
        })
    }
}

/// A checked settlement: the pot and the journal lines that pay it out.
pub(crate) struct SettlementPlan {
    pot: Wei,
    lines: Vec<JournalLine>,
}

impl Tx {
    /// Writes a planned settlement: the settlement row (refused if the match was
    /// already settled or refunded), payouts, journal, entries and match status.
    pub(crate) async fn apply_settlement(
        &mut self,
        s: &Settlement,
        plan: &SettlementPlan,
    ) -> Result<()> {
        self.claim_settlement(
            s.match_id,
            "settled",
            plan.pot,
            s.treasury,
            Some(&s.result_root),
            s.chain_tx_id,
        )
        .await?;
        for p in &s.payouts {
            on_tx!(self, |c| sqlx::query(
                "INSERT INTO payouts (match_id, entry_id, place, amount_wei) VALUES ($1, $2, $3, $4)"
            )
            .bind(s.match_id)
            .bind(p.entry_id)
            .bind(p.place)
            .bind(p.amount)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(|e| Error::on_unique(e, format!("a payout of entry {}", p.entry_id)))?;
        }
        self.post(&plan.lines).await?;
        self.finish_match(
            s.match_id,
            match_status::SETTLED,
            Some(&s.result_hash),
            None,
        )
        .await
    }

    /// Inserts the match's one settlement row; a second one is refused.
    async fn claim_settlement(
        &mut self,
        match_id: i64,
        outcome: &str,
        pot: Wei,
        treasury: Wei,
        result_root: Option<&str>,
        chain_tx_id: Option<i64>,
    ) -> Result<()> {
        let res = on_tx!(self, |c| sqlx::query(
            "INSERT INTO match_settlements
               (match_id, outcome, pot_wei, treasury_wei, result_root, chain_tx_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(match_id)
        .bind(outcome)
        .bind(pot)
        .bind(treasury)
        .bind(result_root)
        .bind(chain_tx_id)
        .bind(now_ms())
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()));
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(Error::AlreadySettled {
                    match_id,
                    outcome: "settled or refunded".into(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks the match and its entries finished.
    async fn finish_match(
        &mut self,
        match_id: i64,
        status: crate::MatchStatus,
        result_hash: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        debug_assert!(status == match_status::SETTLED || status == match_status::REFUNDED);
        on_tx!(self, |c| {
            sqlx::query(
                "UPDATE matches SET status = $2, finished_at = $3, result_hash = $4, error = $5
                 WHERE id = $1",
            )
            .bind(match_id)
            .bind(status)
            .bind(now_ms())
            .bind(result_hash)
            .bind(error)
            .execute(&mut *c)
            .await?;
            sqlx::query("UPDATE entries SET status = $2 WHERE match_id = $1")
                .bind(match_id)
                .bind(status)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}

/// The two lines that move an entry's fee between available and locked: locking
/// (`unlock == false`) or giving it back (`unlock == true`).
fn lock_lines(entry: &Entry, kind: &'static str, unlock: bool) -> Vec<JournalLine> {
    let line = |account: &'static str, credit: bool| JournalLine {
        user_id: Some(entry.user_id),
        account,
        kind,
        credit,
        amount: entry.fee_wei,
        match_id: entry.match_id,
        entry_id: Some(entry.id),
        chain_tx_id: None,
        idempotency_key: format!("{kind}:entry:{}:{account}", entry.id),
    };
    vec![line("available", unlock), line("locked", !unlock)]
}
