//! Start-up and periodic reconciliation: refunds the matches that stopped processes
//! left unfinished and sends every settlement or refund written in the database but
//! not confirmed on chain. With several servers and workers on one database only
//! matches whose lease expired are reclaimed (see `store`'s leases).

use chain::Chain as _;

use super::{PaymentError, Payments, Result};

/// What start-up reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Unfinished matches refunded.
    pub refunded: Vec<i64>,
    /// Settlements written in the database and now sent on chain.
    pub settlements_pushed: Vec<i64>,
    /// Refunds written in the database and now sent on chain.
    pub refunds_pushed: Vec<i64>,
    /// Withdrawals sent but unconfirmed before, now confirmed or reversed (their keys).
    pub withdrawals_finished: Vec<String>,
    /// What the chain follower put in the journal.
    pub followed: super::Followed,
    /// What could not be finished this time, each with why (`match 12: …`,
    /// `entry 40: …`): left as it was for the next sweep, while the sweep carried on
    /// with everything else.
    pub failed: Vec<String>,
}

/// Which unfinished matches [`Payments::reconcile`] may refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaim<'a> {
    /// This process is the only one on the database (the single-process runner's
    /// start-up): every unfinished match was left by a stopped run.
    Everything,
    /// Other servers and workers share the database: only matches whose lease ran out.
    ExpiredLeases {
        /// Who reclaims (this process's id), recorded as the new lease holder.
        by: &'a str,
        /// The time to judge expiry by, ms.
        now_ms: i64,
        /// How long a pending chain transaction is left to its sender before it is
        /// sent again, ms.
        grace_ms: i64,
    },
}

/// How long a reclaimed match stays leased to its reclaimer while it is refunded.
const RECLAIM_LEASE_MS: i64 = 60_000;

impl Payments {
    /// Finishes what stopped processes left, then runs a pass of the chain follower
    /// ([`Payments::follow_chain`]). Unfinished matches are refunded (their
    /// engine state is gone): under [`Reclaim::Everything`] all of them, under
    /// [`Reclaim::ExpiredLeases`] only those whose lease ran out, each taken over
    /// first so that one process alone refunds it. Then every settlement or refund
    /// written in the database but not confirmed on chain is sent (under
    /// `ExpiredLeases`, only those left alone longer than the grace period, since a
    /// live worker may be sending them right now; a race is harmless, the contract
    /// refuses the second send and the escrow then shows it done). One match or entry
    /// that cannot be finished (the chain refuses it, its rows disagree) is reported in
    /// [`Reconciled::failed`] and left for the next sweep; the sweep carries on with
    /// the rest. Only a failure to list what is pending stops it.
    pub async fn reconcile(&self, reclaim: &Reclaim<'_>) -> Result<Reconciled> {
        let mut done = Reconciled::default();
        let reason = "interrupted: the process stopped before the match settled";
        match *reclaim {
            Reclaim::Everything => {
                for status in [store::match_status::PENDING, store::match_status::RUNNING] {
                    for m in self.store.matches_with_status(status).await? {
                        match self.refund(m.id, reason).await {
                            Ok(()) => done.refunded.push(m.id),
                            Err(e) => done.fail(format!("match {}: refund: {e}", m.id)),
                        }
                    }
                }
            }
            Reclaim::ExpiredLeases { by, now_ms, .. } => {
                for lease in self.store.expired_leases(now_ms).await? {
                    // A process never reclaims from itself: a match it holds is live in
                    // it (a late renewal, not a death). A restarted process that reuses
                    // a dead one's id leaves its matches to the other processes' sweeps
                    // and to its own job redelivery.
                    if lease.lease_owner.as_deref() == Some(by) {
                        continue;
                    }
                    let until = now_ms.saturating_add(RECLAIM_LEASE_MS);
                    match self
                        .store
                        .take_expired_lease(lease.id, by, now_ms, until)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            done.fail(format!("match {}: take its lease: {e}", lease.id));
                            continue;
                        }
                    }
                    tracing::warn!(match_id = lease.id, status = %lease.status,
                        holder = ?lease.lease_owner, "reclaiming a match whose lease expired");
                    match self
                        .refund(lease.id, "interrupted: its lease expired before it settled")
                        .await
                    {
                        Ok(()) => done.refunded.push(lease.id),
                        // Its holder settled it just now: nothing to reclaim.
                        Err(PaymentError::Store(store::Error::AlreadySettled { .. })) => {}
                        Err(e) => done.fail(format!("match {}: refund: {e}", lease.id)),
                    }
                }
            }
        }
        let settled_before = match *reclaim {
            Reclaim::Everything => i64::MAX,
            Reclaim::ExpiredLeases {
                now_ms, grace_ms, ..
            } => now_ms.saturating_sub(grace_ms),
        };
        for ct in self.outbox.all_pending().await? {
            if ct.updated_at > settled_before {
                continue;
            }
            let key = ct.idempotency_key.as_str();
            if let Some(id) = key
                .strip_prefix("settle:match:")
                .and_then(|s| s.parse().ok())
            {
                match self.push_settlement(id).await {
                    Ok(true) => done.settlements_pushed.push(id),
                    Ok(false) => {}
                    Err(e) => done.fail(format!("match {id}: send its settlement: {e}")),
                }
            } else if let Some(id) = key
                .strip_prefix("refund:match:")
                .and_then(|s| s.parse().ok())
            {
                if done.refunded.contains(&id) {
                    continue;
                }
                match self.push_refund(id).await {
                    Ok(true) => done.refunds_pushed.push(id),
                    Ok(false) => {}
                    Err(e) => done.fail(format!("match {id}: send its refund: {e}")),
                }
            } else if key.starts_with("withdraw:") {
                match self.finish_withdrawal(&ct).await {
                    Ok(true) => done.withdrawals_finished.push(key.to_string()),
                    Ok(false) => {}
                    Err(e) => done.fail(format!("{key}: finish the withdrawal: {e}")),
                }
            } else if let Some(entry_id) = key
                .strip_prefix("lock:entry:")
                .and_then(|s| s.parse::<i64>().ok())
                && let Err(e) = self.close_stale_lock(&ct, entry_id, reclaim).await
            {
                done.fail(format!("entry {entry_id}: close its pending fee lock: {e}"));
            }
        }
        match self.follow_chain().await {
            Ok(followed) => {
                for why in &followed.waiting {
                    tracing::warn!(%why, "the chain follower waits on this event");
                }
                done.followed = followed;
            }
            Err(e) => done.fail(format!("follow the Arena contract's events: {e}")),
        }
        Ok(done)
    }

    /// A lock left pending belongs to a match that never started; once that match is
    /// refunded, a lock that landed was returned with it. Under `ExpiredLeases` a
    /// match still forming keeps its lock. A lock that was sent but not confirmed
    /// (its hash noted) is followed until the chain decides: still waiting, it stays;
    /// dropped, it is closed; mined after its match was refunded, the fee it put in
    /// the escrow is refunded on chain too, so that nothing is stranded there.
    async fn close_stale_lock(
        &self,
        ct: &store::ChainTransaction,
        entry_id: i64,
        reclaim: &Reclaim<'_>,
    ) -> Result<()> {
        let entry = self.store.entry(entry_id).await?;
        let finished = match entry.match_id {
            Some(m) => !store::is_unfinished(self.store.get_match(m).await?.status),
            None => true,
        };
        if !(matches!(reclaim, Reclaim::Everything) || finished) {
            return Ok(());
        }
        let sent = ct
            .tx_hash
            .as_deref()
            .filter(|h| !h.is_empty())
            .and_then(|h| h.parse::<alloy::primitives::B256>().ok());
        let (Some(hash), Some(match_id)) = (sent, entry.match_id) else {
            self.outbox
                .fail(ct, "superseded by the match's refund")
                .await?;
            return Ok(());
        };
        let chain = self.contracts.chain();
        if chain.receipt(hash).await?.is_none() {
            if !chain.transaction_known(hash).await? {
                self.outbox
                    .fail(ct, "dropped: the chain no longer knows the transaction")
                    .await?;
            }
            return Ok(());
        }
        // It landed. If the match closed as refunded, return the escrow on chain too.
        let refunded = self
            .store
            .match_settlement(match_id)
            .await?
            .is_some_and(|s| s.outcome == store::match_status::REFUNDED);
        let chain_id = super::chain_match_id(match_id)?;
        if refunded && self.contracts.escrow(chain_id).await?.status == chain::MatchStatus::Open {
            self.contracts.refund(self.operator, chain_id).await?;
            tracing::warn!(
                match_id,
                entry_id,
                "a fee lock landed after its match was refunded; returned it on chain"
            );
        }
        self.outbox
            .fail(
                ct,
                "landed after its match closed; returned with the match's refund",
            )
            .await?;
        Ok(())
    }
}

impl Reconciled {
    fn fail(&mut self, why: String) {
        tracing::error!(%why, "reconciliation left this for the next sweep");
        self.failed.push(why);
    }
}
