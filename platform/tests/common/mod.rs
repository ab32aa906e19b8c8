//! What the arena's integration tests share: a judge that separates seats by answer
//! length, the embedded chain with the contracts and payments on it, the shipped
//! Spaces stored, tiny random-weight base models, and SQL behind the store's back.

// Each test binary uses its own subset of these.
#![allow(dead_code)]

use std::sync::Arc;

use arena::judging::RoundJudge;
use chain::{AnyChain, Contracts, Embedded};
use judges::{JudgeId, ResponseVerdict, Score};
use platform::payments::Payments;
use platform::play::{SpaceSlot, seed_spaces};
use spaces::Rulebook;
use store::Store;

/// Dev account that deploys and operates.
pub const OPERATOR: usize = 0;
/// Dev account that receives the rake.
pub const TREASURY: usize = 9;

/// Scores by answer length, so seats differ and pairs are cut.
pub struct ByLength;
impl RoundJudge for ByLength {
    fn judge(
        &self,
        _: &Rulebook,
        _: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError> {
        Ok(responses
            .iter()
            .zip(hard_failed)
            .map(|(r, &hard)| {
                let score = (r.split_whitespace().count() as f64 / 10.0).min(1.0);
                let judge = JudgeId {
                    name: "length".into(),
                    model_hash: String::new(),
                    template_version: "test".into(),
                };
                let line = Score::new(judge, score, format!("{score:.2}"));
                ResponseVerdict::from_scores(score, hard, vec![line])
            })
            .collect())
    }
}

/// A fresh embedded chain with the contracts deployed, and payments over it and `store`.
pub async fn embedded_payments(store: &Store) -> (Arc<Contracts<AnyChain>>, Arc<Payments>) {
    payments_on(store, AnyChain::Embedded(Embedded::ephemeral(31337, 10))).await
}

/// The contracts deployed on `chain` (its dev accounts funded), and payments over them
/// and `store`.
pub async fn payments_on(
    store: &Store,
    chain: AnyChain,
) -> (Arc<Contracts<AnyChain>>, Arc<Payments>) {
    payments_in(store, chain, false).await
}

/// As [`payments_on`], with fees in a test token (18 decimals, minted to the ten dev
/// accounts as they hold ETH) when `token`, so that the same amounts work.
pub async fn payments_in(
    store: &Store,
    chain: AnyChain,
    token: bool,
) -> (Arc<Contracts<AnyChain>>, Arc<Payments>) {
    let dev = chain::dev::dev_accounts(10);
    let asset = if token {
        let minted = chain::dev::DEV_BALANCE_WEI;
        let token = Contracts::deploy_test_token(&chain, dev[OPERATOR], 18, &dev, minted)
            .await
            .unwrap();
        chain::FeeAsset::Token(token)
    } else {
        chain::FeeAsset::Eth
    };
    let contracts = Arc::new(
        Contracts::deploy_for(
            chain,
            dev[OPERATOR],
            chain::ArenaTerms {
                treasury: dev[TREASURY],
                ..chain::ArenaTerms::operated_by(dev[OPERATOR])
            },
            asset,
        )
        .await
        .unwrap(),
    );
    let payments = Arc::new(Payments::new(
        store.clone(),
        contracts.clone(),
        dev[OPERATOR],
    ));
    (contracts, payments)
}

/// The shipped Spaces, stored; only those named in `slugs` (all when empty).
pub async fn shipped_spaces(store: &Store, slugs: &[&str]) -> Vec<SpaceSlot> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/spaces");
    seed_spaces(store, std::path::Path::new(dir))
        .await
        .unwrap()
        .into_iter()
        .filter(|s| slugs.is_empty() || slugs.contains(&s.rulebook.slug.as_str()))
        .collect()
}

/// A Hardhat node for this test, or `None` after reporting why none could start
/// (a failure under `CI=true`).
pub async fn hardhat() -> Option<testkit::hardhat::HardhatNode> {
    let started = tokio::task::spawn_blocking(testkit::hardhat::HardhatNode::start)
        .await
        .unwrap();
    match started {
        Ok(node) => Some(node),
        Err(reason) => testkit::unavailable(&reason),
    }
}

/// A backend on `node` signing for the ten dev accounts that waits `receipt_secs` for
/// a receipt: short, to see transactions go unconfirmed.
pub async fn impatient_rpc(node: &testkit::hardhat::HardhatNode, receipt_secs: u64) -> chain::Rpc {
    chain::Rpc::connect(
        &node.url,
        chain::dev::dev_signers(10),
        Some(31337),
        std::time::Duration::from_secs(receipt_secs),
    )
    .await
    .unwrap()
}

/// Asserts that each of `users`' wallets holds in the Arena contract what the journal
/// says they own (available plus locked).
pub async fn assert_journal_matches_chain(
    store: &Store,
    contracts: &Contracts<AnyChain>,
    users: &[i64],
) {
    for &id in users {
        let user = store.user(id).await.unwrap();
        let wallet: chain::Address = user.wallet_address.parse().unwrap();
        let b = store.balance(id).await.unwrap();
        assert_eq!(
            contracts.balance_of(wallet).await.unwrap(),
            b.available_wei.0 + b.locked_wei.0,
            "user {id}"
        );
    }
}

/// A tiny random-weight llama model served as `name`, its weights' hash `sha` repeated
/// (64 hex digits), with a byte-level tokenizer that encodes any text. Models of
/// different `layers` have different adapter shapes.
pub fn tiny_model(
    name: &str,
    sha: char,
    layers: usize,
    seed: u64,
) -> platform::base_models::LoadedModel {
    let config = agents::ModelConfig {
        architecture: agents::Architecture::Llama,
        vocab_size: 256,
        hidden_size: 32,
        intermediate_size: 64,
        num_layers: layers,
        num_heads: 2,
        num_kv_heads: 1,
        head_dim: 16,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        context_length: 4096,
    };
    platform::base_models::LoadedModel {
        choice: platform::base_models::BaseModelChoice {
            name: name.into(),
            sha256: sha.to_string().repeat(64),
            description: format!("tiny {name}"),
            path: None,
        },
        model: Arc::new(agents::Model::random(config, seed).unwrap()),
        tokenizer: Arc::new(agents::ChatTokenizer::byte_level(256)),
    }
}

/// Runs `;`-separated SQL statements on the SQLite test database at `path`, behind the
/// store's back.
pub async fn sqlite_sql(path: &str, statement: &str) {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    for one in statement.split(';') {
        sqlx::query(sqlx::AssertSqlSafe(one.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}
