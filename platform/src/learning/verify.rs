//! Checking a proof-of-learning record by replay: what a record commits to (the pairs
//! in training order, the results of their matches), the evidence a verifier gathers
//! (from the local database here, or from a server's export API in the binary), and
//! the checks that compare the two and re-run the training.

use std::collections::BTreeMap;
use std::sync::Arc;

use agents::dpo::{DpoConfig, DpoPair, train_dpo};
use agents::{ChatTokenizer, Model};
use alloy::primitives::B256;
use chain::{AnyChain, Contracts};
use serde::{Deserialize, Serialize};
use store::{Store, TrainingPair};

use super::{LearningError, Result};
use crate::runtime::AdapterLibrary;

/// What a record's pairs root commits to of one preference pair. It reads straight
/// from a row of the preference export (`pair_id` is the id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedPair {
    /// The pair's id.
    #[serde(rename = "pair_id")]
    pub id: i64,
    /// Its match.
    pub match_id: i64,
    /// Its round.
    pub round_id: i64,
    /// The exact prompt the policy saw (meta-prompt included). In a public export it
    /// is the `policy_prompt` column, present only for agents whose owners opted their
    /// prompts in; empty when private.
    #[serde(rename = "policy_prompt", default, deserialize_with = "null_as_empty")]
    pub prompt: String,
    /// Hex sha256 of that exact prompt: what the pairs root commits to, so anyone can
    /// check the root while the meta-prompt stays private.
    pub prompt_sha256: String,
    /// The better completion.
    pub chosen: String,
    /// The worse completion.
    pub rejected: String,
    /// The version that wrote the better one.
    pub chosen_agent_version_id: i64,
    /// The version that wrote the worse one.
    pub rejected_agent_version_id: i64,
    /// The better answer was cut off at the token limit: it trains without an
    /// end-of-turn token (leaf version 3 commits to it).
    #[serde(default)]
    pub chosen_truncated: bool,
    /// The worse answer was cut off at the token limit.
    #[serde(default)]
    pub rejected_truncated: bool,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Hex sha256 of a prompt, as pair leaves commit to it.
pub fn prompt_sha256(prompt: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(prompt.as_bytes()))
}

impl From<&TrainingPair> for CommittedPair {
    fn from(p: &TrainingPair) -> CommittedPair {
        CommittedPair {
            id: p.id,
            match_id: p.match_id,
            round_id: p.round_id,
            prompt: p.prompt.clone(),
            prompt_sha256: prompt_sha256(&p.prompt),
            chosen: p.chosen.clone(),
            rejected: p.rejected.clone(),
            chosen_agent_version_id: p.chosen_agent_version_id,
            rejected_agent_version_id: p.rejected_agent_version_id,
            chosen_truncated: store::is_truncated(&p.chosen_finish),
            rejected_truncated: store::is_truncated(&p.rejected_finish),
        }
    }
}

/// The leaf layouts a pairs root may use, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PairLeaf {
    /// Layout 3 (runs made now): the prompt is the training agent's own, by its
    /// sha256, and the leaf commits to whether each answer was cut off, which the
    /// training honours.
    V3,
    /// Layout 2: the chosen answer's prompt by its sha256; every answer trained as
    /// finished.
    V2,
    /// Layout 1: the prompt text itself; every answer trained as finished.
    V1,
}

/// The leaf of pair `index` in a run's pairs root (layout 3): its position and exact
/// content, the prompt by its sha256, and whether each answer was cut off.
pub(crate) fn pair_leaf(index: usize, p: &CommittedPair) -> B256 {
    let mut data = layout2_json(p);
    data["leaf"] = 3.into();
    data["chosen_truncated"] = p.chosen_truncated.into();
    data["rejected_truncated"] = p.rejected_truncated.into();
    chain::merkle::ordered_leaf(index as u64, data.to_string().as_bytes())
}

/// The leaf of records made under layout 2: the prompt by its sha256, no truncation.
pub(crate) fn pair_leaf_v2(index: usize, p: &CommittedPair) -> B256 {
    chain::merkle::ordered_leaf(index as u64, layout2_json(p).to_string().as_bytes())
}

/// A pair's layout-2 leaf data (layout 3 adds to it; keys serialize sorted).
fn layout2_json(p: &CommittedPair) -> serde_json::Value {
    serde_json::json!({
        "leaf": 2,
        "id": p.id,
        "match_id": p.match_id,
        "round_id": p.round_id,
        "prompt_sha256": p.prompt_sha256,
        "chosen": p.chosen,
        "rejected": p.rejected,
        "chosen_agent_version_id": p.chosen_agent_version_id,
        "rejected_agent_version_id": p.rejected_agent_version_id,
    })
}

/// The leaf of records made under layout 1: the prompt text itself.
pub(crate) fn pair_leaf_v1(index: usize, p: &CommittedPair) -> B256 {
    let data = serde_json::json!({
        "id": p.id,
        "match_id": p.match_id,
        "round_id": p.round_id,
        "prompt": p.prompt,
        "chosen": p.chosen,
        "rejected": p.rejected,
        "chosen_agent_version_id": p.chosen_agent_version_id,
        "rejected_agent_version_id": p.rejected_agent_version_id,
    });
    chain::merkle::ordered_leaf(index as u64, data.to_string().as_bytes())
}

/// The Merkle root of pairs in training order (layout 3, what new runs record).
pub(crate) fn pairs_root(pairs: &[CommittedPair]) -> B256 {
    pairs_root_in(PairLeaf::V3, pairs)
}

/// The Merkle root of pairs in training order under `layout`.
pub(crate) fn pairs_root_in(layout: PairLeaf, pairs: &[CommittedPair]) -> B256 {
    let leaf = match layout {
        PairLeaf::V3 => pair_leaf,
        PairLeaf::V2 => pair_leaf_v2,
        PairLeaf::V1 => pair_leaf_v1,
    };
    let leaves: Vec<B256> = pairs.iter().enumerate().map(|(i, p)| leaf(i, p)).collect();
    chain::merkle::root(&leaves)
}

/// The leaf of one match in a results root: its id and settled result root.
pub(crate) fn result_leaf(match_id: i64, result_root: &str) -> B256 {
    chain::merkle::leaf_hash(format!("rlfc-match-result:{match_id}:{result_root}").as_bytes())
}

/// The matches behind `pairs` (by id) with their settled result roots.
pub(super) async fn match_results(
    store: &Store,
    pairs: &[CommittedPair],
) -> Result<BTreeMap<i64, String>> {
    let mut results = BTreeMap::new();
    for p in pairs {
        if results.contains_key(&p.match_id) {
            continue;
        }
        let s = store.match_settlement(p.match_id).await?.ok_or_else(|| {
            LearningError::Invalid(format!("match {} has no settlement", p.match_id))
        })?;
        let root = s.result_root.ok_or_else(|| {
            LearningError::Invalid(format!(
                "match {} was not settled with a result",
                p.match_id
            ))
        })?;
        results.insert(p.match_id, root);
    }
    Ok(results)
}

pub(super) fn results_leaves(results: &BTreeMap<i64, String>) -> Vec<B256> {
    results
        .iter()
        .map(|(id, root)| result_leaf(*id, root))
        .collect()
}

pub(super) fn hex32(text: &str) -> Result<B256> {
    let t = text.strip_prefix("0x").unwrap_or(text);
    format!("0x{t}")
        .parse()
        .map_err(|e| LearningError::Invalid(format!("{text:?} is not a 32-byte hex hash: {e}")))
}

/// The pairs a run trains on, as the trainer reads them. Only layout 3 trains a cut-off
/// answer as open; earlier layouts trained every answer as finished.
pub(crate) fn dpo_pairs(pairs: &[CommittedPair], layout: PairLeaf) -> Vec<DpoPair> {
    let open = layout == PairLeaf::V3;
    pairs
        .iter()
        .map(|p| DpoPair {
            prompt: p.prompt.clone(),
            chosen: p.chosen.clone(),
            rejected: p.rejected.clone(),
            chosen_truncated: open && p.chosen_truncated,
            rejected_truncated: open && p.rejected_truncated,
        })
        .collect()
}

/// What verifying a record found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The record.
    pub record_id: u64,
    /// Each check in order, with whether it passed.
    pub checks: Vec<(String, bool)>,
    /// The first check that failed, with what differs.
    pub failure: Option<String>,
    /// What could not be checked and why (neither a pass nor a failure), e.g. a
    /// free-tier match whose result root was never anchored on chain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Verdict {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// These checks followed by `then`'s (run only when these passed).
    pub fn then(mut self, then: Verdict) -> Verdict {
        self.checks.extend(then.checks);
        self.notes.extend(then.notes);
        self.failure = self.failure.or(then.failure);
        self
    }
}

/// Checks a record against what the chain itself says, before any evidence about its
/// training is trusted: that the Arena operator or a trainer the registry still lists
/// wrote it, and that each match result the evidence names is the result root the Arena
/// contract stored when it settled that match (a free-tier match's root is anchored
/// there when it is recorded). A match with no root on chain (a free-tier match from
/// before anchoring, or one whose anchoring is still pending) is noted as unanchored
/// rather than checked.
pub async fn chain_checks(
    contracts: &Contracts<AnyChain>,
    on_chain: &chain::LearningRecord,
    evidence: &RunEvidence,
) -> Result<Verdict> {
    let mut verdict = Verdict {
        record_id: on_chain.id,
        checks: Vec::new(),
        failure: None,
        notes: Vec::new(),
    };
    let operator = contracts.operator().await?;
    // A registry deployed before trainers were registered has no `isTrainer`: there
    // only the operator counts.
    let registered = on_chain.trainer == operator
        || contracts
            .is_trainer(on_chain.trainer)
            .await
            .unwrap_or(false);
    verdict
        .checks
        .push(("recorded by a registered trainer".into(), registered));
    if !registered {
        verdict.failure = Some(format!(
            "recorded by a registered trainer: account {:#x} wrote the record; it is not the Arena operator ({operator:#x}) nor a trainer the registry lists",
            on_chain.trainer
        ));
        return Ok(verdict);
    }
    for (match_id, root) in &evidence.match_results {
        let id = u64::try_from(*match_id)
            .map_err(|_| LearningError::Invalid(format!("match id {match_id} is negative")))?;
        let anchored = contracts.result_root(id).await?;
        if anchored == B256::ZERO {
            verdict.notes.push(format!(
                "match {match_id}: its result root is not anchored on chain (a free-tier match played before anchoring, or one whose anchoring is still pending), so only the operator's database vouches for it"
            ));
            continue;
        }
        let name = format!("match {match_id} result root as the Arena contract stored it");
        let same = hex32(root).is_ok_and(|r| r == anchored);
        verdict.checks.push((name.clone(), same));
        if !same {
            verdict.failure = Some(format!(
                "{name}: the evidence gives {root}, the contract holds {anchored}"
            ));
            return Ok(verdict);
        }
    }
    Ok(verdict)
}

/// What a record is checked against: the run's pairs in training order, the settled
/// result root of each match they came from, the run's hyperparameters and the parent
/// adapter's hash. It comes from the local database ([`local_evidence`]) or from a
/// server's export API (`rlfc verify-pol --from URL`); either way every part is
/// checked against the record on chain before it is trusted.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvidence {
    /// The pairs, in training order.
    pub pairs: Vec<CommittedPair>,
    /// Each pair's match and its settled result root.
    pub match_results: BTreeMap<i64, String>,
    /// The run's hyperparameters.
    pub hyperparams: DpoConfig,
    /// The adapter the run trained from (`None`: the bare base model).
    pub parent_adapter_hash: Option<String>,
    /// The pairs root the run stored when it trained, if known (names a change since).
    pub stored_pairs_root: Option<String>,
}

/// The evidence for `record_id` from the local database.
pub async fn local_evidence(store: &Store, record_id: u64) -> Result<RunEvidence> {
    let local = store
        .pol_record_by_record_id(record_id as i64)
        .await?
        .ok_or_else(|| {
            LearningError::Invalid(format!(
                "record {record_id} is on chain but its training run is not in this database"
            ))
        })?;
    let run = store.training_run(local.training_run_id).await?;
    let pairs: Vec<CommittedPair> = store
        .training_run_training_pairs(run.id)
        .await?
        .iter()
        .map(CommittedPair::from)
        .collect();
    let match_results = match_results(store, &pairs).await?;
    let hyperparams: DpoConfig = serde_json::from_str(&run.hyperparams)
        .map_err(|e| LearningError::Invalid(format!("run {} hyperparameters: {e}", run.id)))?;
    let parent = store.agent_version(run.parent_version_id).await?;
    Ok(RunEvidence {
        pairs,
        match_results,
        hyperparams,
        parent_adapter_hash: parent.adapter_hash,
        stored_pairs_root: Some(run.pairs_root),
    })
}

/// Whether the adapter the record names as new must be in the local library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredAdapter {
    /// It must be there and hash right (the platform's own records).
    Required,
    /// Checked when it is there; a verifier elsewhere may not hold it, and the
    /// retrained hash is compared with the record either way.
    IfPresent,
}

/// Verifies a proof-of-learning record against the local database: [`chain_checks`],
/// then [`verify_evidence`].
pub async fn verify_record(
    store: &Store,
    contracts: &Contracts<AnyChain>,
    model: &Arc<Model>,
    tokenizer: &Arc<ChatTokenizer>,
    adapters: &AdapterLibrary,
    record_id: u64,
) -> Result<Verdict> {
    let on_chain = contracts.get_record(record_id).await?;
    let evidence = local_evidence(store, record_id).await?;
    let chain = chain_checks(contracts, &on_chain, &evidence).await?;
    if !chain.passed() {
        return Ok(chain);
    }
    Ok(chain.then(
        verify_evidence(
            &on_chain,
            &evidence,
            model,
            tokenizer,
            adapters,
            StoredAdapter::Required,
        )
        .await?,
    ))
}

/// Verifies a record read from the chain against `evidence`: checks the pairs root,
/// every pair's match result against the results root, the hyperparameters hash, the
/// parent adapter and the stored new adapter against their hashes, then re-runs the
/// training from the parent adapter and compares the new hash. Stops at the first
/// difference.
pub async fn verify_evidence(
    on_chain: &chain::LearningRecord,
    evidence: &RunEvidence,
    model: &Arc<Model>,
    tokenizer: &Arc<ChatTokenizer>,
    adapters: &AdapterLibrary,
    stored_adapter: StoredAdapter,
) -> Result<Verdict> {
    let mut verdict = Verdict {
        record_id: on_chain.id,
        checks: Vec::new(),
        failure: None,
        notes: Vec::new(),
    };
    macro_rules! check {
        ($name:expr, $ok:expr, $why:expr) => {{
            let ok = $ok;
            verdict.checks.push(($name.to_string(), ok));
            if !ok {
                verdict.failure = Some(format!("{}: {}", $name, $why));
                return Ok(verdict);
            }
        }};
    }
    let pairs = &evidence.pairs;
    let root = pairs_root(pairs);
    // Records made under an earlier leaf layout are checked under theirs (layout 1
    // committed to the prompt texts, so only where they are all known), and retrained
    // as they were trained.
    let layout = [PairLeaf::V3, PairLeaf::V2, PairLeaf::V1]
        .into_iter()
        .filter(|l| *l != PairLeaf::V1 || pairs.iter().all(|p| !p.prompt.is_empty()))
        .find(|l| pairs_root_in(*l, pairs) == on_chain.fields.pairs_root);
    check!(
        "pairs root",
        layout.is_some(),
        format!(
            "the {} pairs hash to {root}, the record holds {}{}",
            pairs.len(),
            on_chain.fields.pairs_root,
            evidence
                .stored_pairs_root
                .as_deref()
                .map(|r| first_changed_pair(pairs, r))
                .unwrap_or_default()
        )
    );
    let leaves = results_leaves(&evidence.match_results);
    let results_root = on_chain.fields.results_root;
    for p in pairs {
        let in_root = evidence.match_results.get(&p.match_id).is_some_and(|r| {
            let leaf = result_leaf(p.match_id, r);
            leaves
                .iter()
                .position(|l| *l == leaf)
                .and_then(|i| chain::merkle::proof(&leaves, i))
                .is_some_and(|proof| chain::merkle::verify(&proof, results_root, leaf))
        });
        check!(
            format!("pair {} in the results root", p.id),
            in_root,
            format!(
                "match {}'s result is not under the recorded results root {results_root}",
                p.match_id
            )
        );
    }
    let dpo = evidence.hyperparams.clone();
    let hyper = hex32(&dpo.hyperparameters_hash())?;
    let recorded_hyper = on_chain.fields.hyperparams_hash;
    check!(
        "hyperparameters hash",
        hyper == recorded_hyper,
        match dpo.earlier_algorithm_for(&recorded_hyper.to_string()) {
            // Same settings, older training code: say so rather than "other settings".
            Some(old) => format!(
                "the run was trained by earlier training code ({old}); this verifier runs {} and cannot reproduce its adapter",
                agents::DPO_ALGORITHM
            ),
            None => format!(
                "the run's hyperparameters hash to {hyper}, the record holds {recorded_hyper}"
            ),
        }
    );
    // The run names its base model (through the hashed hyperparameters): re-training
    // on any other file could not reproduce the adapter.
    let recorded_base = dpo.base_model_sha256.as_str();
    if !recorded_base.is_empty() {
        let here = model.source_sha256().unwrap_or("a model built in memory");
        check!(
            "base model",
            here == recorded_base,
            format!("the run trained on base model {recorded_base}, this verifier has {here}")
        );
    } else {
        verdict.notes.push(
            "the run was recorded before runs named their base model: re-training assumes this verifier's base model is the one it used".to_string(),
        );
    }
    let parent = match &evidence.parent_adapter_hash {
        Some(h) => {
            // A library over the database fetches an adapter this host lacks.
            let _ = adapters.fetch(h).await;
            let got = adapters.get(h, model.config());
            check!(
                "parent adapter",
                got.is_ok() && hex32(h)? == on_chain.fields.parent_adapter_hash,
                format!(
                    "{} (record holds {})",
                    got.as_ref()
                        .err()
                        .cloned()
                        .unwrap_or_else(|| format!("parent is {h}")),
                    on_chain.fields.parent_adapter_hash
                )
            );
            got.ok()
        }
        None => {
            check!(
                "parent adapter",
                on_chain.fields.parent_adapter_hash == B256::ZERO,
                format!(
                    "the run started from the bare base model but the record names parent {}",
                    on_chain.fields.parent_adapter_hash
                )
            );
            None
        }
    };
    let new_hash = format!("{:x}", on_chain.fields.new_adapter_hash);
    let _ = adapters.fetch(&new_hash).await;
    if stored_adapter == StoredAdapter::Required || adapters.dir_of(&new_hash).exists() {
        let stored = adapters.get(&new_hash, model.config());
        check!(
            "stored adapter",
            stored.is_ok(),
            stored.err().unwrap_or_default()
        );
    }
    // Retraining needs every exact prompt; a private one cannot be re-derived here.
    let private = pairs.iter().filter(|p| p.prompt.is_empty()).count();
    check!(
        "prompts available to retrain",
        private == 0,
        format!(
            "{private} of {} pairs' prompts are private (their agents' owners have not opted them into public exports): the roots and hyperparameters check out, but only the operator can re-run this training",
            pairs.len()
        )
    );
    let forged = pairs
        .iter()
        .find(|p| prompt_sha256(&p.prompt) != p.prompt_sha256);
    check!(
        "prompts match their hashes",
        forged.is_none(),
        format!(
            "pair {}'s prompt does not hash to the committed {}",
            forged.map_or(0, |p| p.id),
            forged.map_or("", |p| p.prompt_sha256.as_str())
        )
    );
    let data = dpo_pairs(pairs, layout.unwrap_or(PairLeaf::V3));
    let (m, t, d) = (model.clone(), tokenizer.clone(), dpo.clone());
    let retrained = tokio::task::spawn_blocking(move || {
        train_dpo(&m, &t, parent.as_deref(), &data, &d, |_| {})
    })
    .await
    .map_err(|e| LearningError::Invalid(format!("the training task failed: {e}")))??;
    check!(
        "retrained adapter hash",
        hex32(&retrained.adapter_hash)? == on_chain.fields.new_adapter_hash,
        format!(
            "training again gives {}, the record holds {}",
            retrained.adapter_hash, on_chain.fields.new_adapter_hash
        )
    );
    Ok(verdict)
}

/// A hint at which pair changed: the first pair whose prefix root no longer matches
/// is not knowable from the root alone, so this names the pair count and stored root.
fn first_changed_pair(pairs: &[CommittedPair], stored_root: &str) -> String {
    let now = pairs_root(pairs);
    if format!("{now}") == stored_root {
        String::new()
    } else {
        format!(
            " (the run stored root {stored_root} when it trained; the pairs have changed or \
             been reordered since)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> CommittedPair {
        CommittedPair {
            id: 7,
            match_id: 3,
            round_id: 11,
            prompt: "p".into(),
            prompt_sha256: prompt_sha256("p"),
            chosen: "yes".into(),
            rejected: "no".into(),
            chosen_agent_version_id: 5,
            rejected_agent_version_id: 6,
            chosen_truncated: false,
            rejected_truncated: true,
        }
    }

    /// The leaf bytes `docs/proof-of-learning.md` states: compact JSON, keys sorted,
    /// after the position as 8 big-endian bytes.
    #[test]
    fn leaves_hash_the_documented_bytes() {
        let p = pair();
        let sha = prompt_sha256("p");
        let v3 = format!(
            r#"{{"chosen":"yes","chosen_agent_version_id":5,"chosen_truncated":false,"id":7,"leaf":3,"match_id":3,"prompt_sha256":"{sha}","rejected":"no","rejected_agent_version_id":6,"rejected_truncated":true,"round_id":11}}"#
        );
        assert_eq!(
            pair_leaf(2, &p),
            chain::merkle::ordered_leaf(2, v3.as_bytes())
        );
        let v2 = format!(
            r#"{{"chosen":"yes","chosen_agent_version_id":5,"id":7,"leaf":2,"match_id":3,"prompt_sha256":"{sha}","rejected":"no","rejected_agent_version_id":6,"round_id":11}}"#
        );
        assert_eq!(
            pair_leaf_v2(2, &p),
            chain::merkle::ordered_leaf(2, v2.as_bytes())
        );
        assert_eq!(
            result_leaf(3, "0xab"),
            chain::merkle::leaf_hash(b"rlfc-match-result:3:0xab")
        );
    }

    #[test]
    fn only_layout_three_trains_cut_off_answers_open() {
        let pairs = [pair()];
        assert!(dpo_pairs(&pairs, PairLeaf::V3)[0].rejected_truncated);
        assert!(!dpo_pairs(&pairs, PairLeaf::V2)[0].rejected_truncated);
        assert_ne!(
            pairs_root_in(PairLeaf::V3, &pairs),
            pairs_root_in(PairLeaf::V2, &pairs)
        );
    }
}
