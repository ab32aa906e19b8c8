//! Opening the chain the configuration asks for: [`AnyChain`] is either backend behind
//! the one [`Chain`] interface, and [`open_contracts`] gives the platform its contracts
//! (on the embedded chain they are deployed on first use and remembered in its
//! directory; on an RPC chain they come from the configuration).

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};

use crate::backend::{Chain, MinedLog, TxReceipt, TxRequest};
use crate::config::{Backend, ChainConfig, FeeTokenSetting};
use crate::contracts::{ArenaTerms, Contracts, Deployment, FeeAsset};
use crate::embedded::Embedded;
use crate::error::{ChainError, Result};
use crate::rpc::Rpc;

/// File in the embedded chain's directory that remembers where the contracts are.
const DEPLOYMENT_FILE: &str = "deployment.json";

/// The embedded chain's directory under the data directory.
pub fn embedded_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("chain")
}

/// Either backend.
#[derive(Debug)]
pub enum AnyChain {
    /// The in-process revm chain.
    Embedded(Embedded),
    /// A JSON-RPC node.
    Rpc(Rpc),
}

/// Opens the configured backend (validating the config first). The embedded chain
/// lives in `<data_dir>/chain`.
pub async fn open_chain(cfg: &ChainConfig, data_dir: &Path) -> Result<AnyChain> {
    cfg.validate()?;
    match cfg.backend {
        Backend::Embedded => {
            let chain = Embedded::open(
                &embedded_dir(data_dir),
                cfg.embedded_chain_id(),
                cfg.dev_accounts,
            )?;
            Ok(AnyChain::Embedded(chain))
        }
        Backend::Rpc => {
            let url = cfg.rpc_url.as_deref().unwrap_or_default();
            let mut signer: Vec<_> = cfg.signer()?.into_iter().collect();
            if cfg.rpc_dev_signers {
                signer.extend(crate::dev::dev_signers(cfg.dev_accounts));
            }
            let timeout = Duration::from_secs(cfg.receipt_timeout_secs);
            Ok(AnyChain::Rpc(
                Rpc::connect(url, signer, cfg.chain_id, timeout).await?,
            ))
        }
    }
}

/// The account that deploys and, unless configured otherwise, operates.
pub fn default_sender(chain: &AnyChain) -> Result<Address> {
    chain
        .accounts()
        .first()
        .copied()
        .ok_or(ChainError::UnknownAccount(Address::ZERO))
}

/// The Arena operator the config names, else the backend's first account.
pub fn operator_of(cfg: &ChainConfig, chain: &AnyChain) -> Result<Address> {
    cfg.operator.map_or_else(|| default_sender(chain), Ok)
}

/// The treasury the config names, else the operator.
pub(crate) fn treasury_of(cfg: &ChainConfig, chain: &AnyChain) -> Result<Address> {
    cfg.treasury.map_or_else(|| operator_of(cfg, chain), Ok)
}

/// The terms a contract this process deploys runs on: the configured operator,
/// treasury and reclaim delay.
pub fn terms_of(cfg: &ChainConfig, chain: &AnyChain) -> Result<ArenaTerms> {
    Ok(ArenaTerms {
        operator: operator_of(cfg, chain)?,
        treasury: treasury_of(cfg, chain)?,
        reclaim_after_secs: cfg.reclaim_after_secs,
    })
}

/// The configured contract addresses, if set (what the Arena holds is asked of it).
pub fn configured_deployment(cfg: &ChainConfig) -> Option<(Address, Address)> {
    Some((cfg.arena_address?, cfg.proof_of_learning_address?))
}

/// How much of the test token each dev account is minted when this process deploys
/// it: as many tokens as the dev accounts hold ETH.
pub const TEST_TOKEN_MINT: u128 = crate::dev::DEV_BALANCE_WEI;

/// Decimals of the test token this process deploys (as ETH's, so that the Spaces'
/// fee tiers, written in the smallest unit, mean the same amounts).
pub const TEST_TOKEN_DECIMALS: u8 = 18;

/// Deploys both contracts on `chain` from its first account (the admin), on the
/// configured terms and fee asset. For `fee_token = "test"` a test token is deployed
/// first and minted to every account the chain signs for.
pub async fn deploy_configured(cfg: &ChainConfig, chain: AnyChain) -> Result<Contracts<AnyChain>> {
    let deployer = default_sender(&chain)?;
    let terms = terms_of(cfg, &chain)?;
    let asset = match cfg.fee_token {
        None | Some(FeeTokenSetting::Eth) => FeeAsset::Eth,
        Some(FeeTokenSetting::Token(token)) => FeeAsset::Token(token),
        Some(FeeTokenSetting::Test) => {
            let holders = chain.accounts();
            let token = Contracts::deploy_test_token(
                &chain,
                deployer,
                TEST_TOKEN_DECIMALS,
                &holders,
                TEST_TOKEN_MINT,
            )
            .await?;
            FeeAsset::Token(token)
        }
    };
    Contracts::deploy_for(chain, deployer, terms, asset).await
}

/// Refuses an Arena that holds another asset than `chain.fee_token` asks for.
pub(crate) fn check_fee_asset(cfg: &ChainConfig, deployment: &Deployment) -> Result<()> {
    let fits = match (cfg.fee_token, deployment.fee_token) {
        (None, _) | (Some(FeeTokenSetting::Eth), None) | (Some(FeeTokenSetting::Test), Some(_)) => {
            true
        }
        (Some(FeeTokenSetting::Token(want)), Some(found)) => want == found,
        _ => false,
    };
    if fits {
        return Ok(());
    }
    Err(ChainError::FeeAssetMismatch {
        arena: deployment.arena,
        configured: cfg.fee_token.map(String::from).unwrap_or_default(),
        found: deployment
            .fee_token
            .map_or_else(|| "ETH".to_string(), |t| format!("the token {t}")),
    })
}

/// Opens the chain and its contracts. Embedded: deploys them on first use (deployer is
/// dev account 0) and remembers the addresses. RPC: uses the configured addresses, or
/// fails with [`ChainError::NotDeployed`]. Either way the Arena must hold the asset
/// `chain.fee_token` names.
pub async fn open_contracts(cfg: &ChainConfig, data_dir: &Path) -> Result<Contracts<AnyChain>> {
    let chain = open_chain(cfg, data_dir).await?;
    if let Some((arena, proof_of_learning)) = configured_deployment(cfg) {
        let named = Deployment {
            arena,
            proof_of_learning,
            fee_token: None,
        };
        if !crate::migrate::is_current(&chain, named).await? {
            return Err(ChainError::WrongArenaVersion(arena));
        }
        let contracts = Contracts::discover(chain, arena, proof_of_learning).await?;
        check_fee_asset(cfg, &contracts.deployment())?;
        return Ok(contracts);
    }
    match &chain {
        AnyChain::Embedded(embedded) => {
            if let Some(deployment) = embedded.read_side_file::<Deployment>(DEPLOYMENT_FILE)? {
                check_fee_asset(cfg, &deployment)?;
                if crate::migrate::is_current(&chain, deployment).await? {
                    return Ok(Contracts::at(chain, deployment));
                }
                // Saved by an older build: move to the current Arena contract.
                let deployer = default_sender(&chain)?;
                let terms = terms_of(cfg, &chain)?;
                let (moved_to, done) =
                    crate::migrate::migrate_arena(&chain, deployment, deployer, terms).await?;
                embedded.write_side_file(DEPLOYMENT_FILE, &moved_to)?;
                tracing::warn!(
                    from = %done.from, to = %moved_to.arena, refunded = ?done.refunded,
                    moved = done.moved.len(), anchored = done.anchored,
                    stranded = ?done.stranded,
                    "moved the embedded chain to the current Arena contract (version {})",
                    crate::rules::ARENA_VERSION
                );
                return Ok(Contracts::at(chain, moved_to));
            }
            let contracts = deploy_configured(cfg, chain).await?;
            if let AnyChain::Embedded(embedded) = contracts.chain() {
                embedded.write_side_file(DEPLOYMENT_FILE, &contracts.deployment())?;
            }
            Ok(contracts)
        }
        AnyChain::Rpc(_) => Err(ChainError::NotDeployed("Arena")),
    }
}

impl Chain for AnyChain {
    fn backend_name(&self) -> &'static str {
        match self {
            Self::Embedded(c) => c.backend_name(),
            Self::Rpc(c) => c.backend_name(),
        }
    }

    fn accounts(&self) -> Vec<Address> {
        match self {
            Self::Embedded(c) => c.accounts(),
            Self::Rpc(c) => c.accounts(),
        }
    }

    async fn chain_id(&self) -> Result<u64> {
        match self {
            Self::Embedded(c) => c.chain_id().await,
            Self::Rpc(c) => c.chain_id().await,
        }
    }

    async fn block_number(&self) -> Result<u64> {
        match self {
            Self::Embedded(c) => c.block_number().await,
            Self::Rpc(c) => c.block_number().await,
        }
    }

    async fn balance(&self, account: Address) -> Result<U256> {
        match self {
            Self::Embedded(c) => c.balance(account).await,
            Self::Rpc(c) => c.balance(account).await,
        }
    }

    async fn call(&self, tx: TxRequest) -> Result<Bytes> {
        match self {
            Self::Embedded(c) => c.call(tx).await,
            Self::Rpc(c) => c.call(tx).await,
        }
    }

    async fn send(&self, tx: TxRequest) -> Result<TxReceipt> {
        match self {
            Self::Embedded(c) => c.send(tx).await,
            Self::Rpc(c) => c.send(tx).await,
        }
    }

    async fn receipt(&self, tx_hash: B256) -> Result<Option<TxReceipt>> {
        match self {
            Self::Embedded(c) => c.receipt(tx_hash).await,
            Self::Rpc(c) => c.receipt(tx_hash).await,
        }
    }

    async fn logs(&self, address: Address, from_block: u64) -> Result<Vec<MinedLog>> {
        match self {
            Self::Embedded(c) => c.logs(address, from_block).await,
            Self::Rpc(c) => c.logs(address, from_block).await,
        }
    }

    async fn logs_between(
        &self,
        address: Address,
        from_block: u64,
        to_block: u64,
    ) -> Result<Vec<MinedLog>> {
        match self {
            Self::Embedded(c) => c.logs_between(address, from_block, to_block).await,
            Self::Rpc(c) => c.logs_between(address, from_block, to_block).await,
        }
    }

    async fn transaction_known(&self, tx_hash: B256) -> Result<bool> {
        match self {
            Self::Embedded(c) => c.transaction_known(tx_hash).await,
            Self::Rpc(c) => c.transaction_known(tx_hash).await,
        }
    }

    async fn fund(&self, to: Address, amount: U256) -> Result<()> {
        match self {
            Self::Embedded(c) => c.fund(to, amount).await,
            Self::Rpc(c) => c.fund(to, amount).await,
        }
    }
}
