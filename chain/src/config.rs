//! The `[chain]` section of the configuration: which backend, where the RPC node is,
//! the signing key (a [`Secret`], never printed by `Debug`), the expected chain id,
//! already-deployed contract addresses, and the operator and treasury accounts.

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

/// The chain id the embedded chain uses unless told otherwise (Hardhat's, 31337).
pub const DEFAULT_CHAIN_ID: u64 = 31337;

/// Environment variable read for the signing key when the config holds none.
pub const PRIVATE_KEY_ENV: &str = "RLFC_CHAIN_PRIVATE_KEY";

/// Which chain backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The in-process revm chain persisted in the data directory.
    #[default]
    Embedded,
    /// Any EVM JSON-RPC endpoint.
    Rpc,
}

/// A secret string: serialized as is, but `Debug` shows only `***`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The longest reclaim delay a deployment may promise its entrants: one year.
pub(crate) const MAX_RECLAIM_AFTER_SECS: u64 = 365 * 24 * 60 * 60;

/// The chain id of local dev nodes (Hardhat, Anvil) and of the embedded chain.
pub(crate) const DEV_CHAIN_ID: u64 = 31337;

/// The chain configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// "embedded" (default) or "rpc".
    pub backend: Backend,
    /// JSON-RPC endpoint (http or https); required for the rpc backend.
    pub rpc_url: Option<String>,
    /// Hex private key that signs RPC transactions (else `RLFC_CHAIN_PRIVATE_KEY`).
    pub private_key: Option<Secret>,
    /// Expected chain id: the embedded chain uses it (default 31337), an RPC node must match it.
    pub chain_id: Option<u64>,
    /// Arena contract address, if already deployed (rpc); the embedded chain deploys its own.
    pub arena_address: Option<Address>,
    /// ProofOfLearning contract address, if already deployed (rpc).
    pub proof_of_learning_address: Option<Address>,
    /// Arena operator; defaults to the signing account (rpc) or dev account 0 (embedded).
    pub operator: Option<Address>,
    /// Where settlement remainders go; defaults to the operator.
    pub treasury: Option<Address>,
    /// How many funded dev accounts the embedded chain creates.
    pub dev_accounts: usize,
    /// RPC only: also sign for the first `dev_accounts` dev wallets (whose keys are
    /// public), for a local dev node funded with them, such as the Hardhat node the
    /// tests start. Refused unless `chain_id` is 31337.
    pub rpc_dev_signers: bool,
    /// How long to wait for a transaction receipt, in seconds.
    pub receipt_timeout_secs: u64,
    /// For contracts this process deploys: seconds after a match's first locked fee
    /// from which any of its entrants may reclaim every fee of a match the operator
    /// neither settled nor refunded (default one day).
    pub reclaim_after_secs: u64,
    /// How many blocks below the head the chain follower stays, so that a
    /// reorganisation up to this depth never reaches the journal (0 on a dev chain;
    /// a dozen or more on a public network).
    pub confirmations: u64,
    /// What entry fees are paid in (unset: ETH when this process deploys the
    /// contracts, and whatever the configured Arena holds otherwise): `"eth"`; the
    /// address of an ERC-20 token (`"0x..."`, such as USDC); or `"test"`, a test
    /// token (`TUSD`, 18 decimals) that this process deploys and mints to the dev
    /// accounts, for the embedded chain and local dev nodes only.
    pub fee_token: Option<FeeTokenSetting>,
    /// The block the chain follower starts reading the Arena contract's events from
    /// when it has read none yet: the contract's deployment block (`rlfc chain deploy`
    /// prints it), so that a follower on a long public chain does not scan from the
    /// genesis block. 0 reads everything.
    pub start_block: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            rpc_url: None,
            private_key: None,
            chain_id: None,
            arena_address: None,
            proof_of_learning_address: None,
            operator: None,
            treasury: None,
            dev_accounts: crate::dev::DEFAULT_DEV_ACCOUNTS,
            rpc_dev_signers: false,
            receipt_timeout_secs: 120,
            reclaim_after_secs: crate::rules::DEFAULT_RECLAIM_AFTER_SECS,
            confirmations: 0,
            fee_token: None,
            start_block: 0,
        }
    }
}

/// A configuration value that is missing or wrong; `key` names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain.{key}: {reason}")]
pub struct ConfigError {
    /// The key under `[chain]`, e.g. `rpc_url`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

impl ChainConfig {
    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.chain_id == Some(0) {
            return Err(invalid("chain_id", "must be positive"));
        }
        if self.dev_accounts == 0 || self.dev_accounts > 1000 {
            return Err(invalid("dev_accounts", "must be between 1 and 1000"));
        }
        if self.receipt_timeout_secs == 0 {
            return Err(invalid("receipt_timeout_secs", "must be positive"));
        }
        if self.confirmations > 10_000 {
            return Err(invalid("confirmations", "must be between 0 and 10000"));
        }
        if self.reclaim_after_secs == 0 || self.reclaim_after_secs > MAX_RECLAIM_AFTER_SECS {
            return Err(invalid(
                "reclaim_after_secs",
                format!("must be between 1 and {MAX_RECLAIM_AFTER_SECS} (one year)"),
            ));
        }
        for (key, value) in [("operator", self.operator), ("treasury", self.treasury)] {
            if value == Some(Address::ZERO) {
                return Err(invalid(key, "must not be the zero address"));
            }
        }
        if self.arena_address.is_some() != self.proof_of_learning_address.is_some() {
            let key = if self.arena_address.is_some() {
                "proof_of_learning_address"
            } else {
                "arena_address"
            };
            return Err(invalid(key, "set both contract addresses or neither"));
        }
        if let Some(url) = &self.rpc_url {
            check_url(url)?;
        }
        if let Some(key) = &self.private_key {
            parse_key(key.expose())?;
        }
        if self.rpc_dev_signers && self.chain_id != Some(DEV_CHAIN_ID) {
            return Err(invalid(
                "rpc_dev_signers",
                format!("only for a dev node: set chain_id = {DEV_CHAIN_ID}"),
            ));
        }
        match self.fee_token {
            Some(FeeTokenSetting::Token(Address::ZERO)) => {
                return Err(invalid(
                    "fee_token",
                    "the zero address is not a token (write \"eth\" for ETH)",
                ));
            }
            Some(FeeTokenSetting::Test)
                if self.backend == Backend::Rpc && self.chain_id != Some(DEV_CHAIN_ID) =>
            {
                return Err(invalid(
                    "fee_token",
                    format!(
                        "\"test\" deploys a test token, only on the embedded chain or a dev \
                         node (chain_id = {DEV_CHAIN_ID}); on a real network name the token's address"
                    ),
                ));
            }
            Some(FeeTokenSetting::Test) if self.arena_address.is_some() => {
                return Err(invalid(
                    "fee_token",
                    "\"test\" deploys a new test token, but arena_address names deployed \
                     contracts: name their token's address instead",
                ));
            }
            _ => {}
        }
        if self.backend == Backend::Rpc {
            if self.rpc_url.is_none() {
                return Err(invalid("rpc_url", "required when backend = \"rpc\""));
            }
            if self.signer()?.is_none() {
                let reason = format!("required when backend = \"rpc\" (or set {PRIVATE_KEY_ENV})");
                return Err(invalid("private_key", reason));
            }
        }
        Ok(())
    }

    /// The signing key from the config, else from `RLFC_CHAIN_PRIVATE_KEY`, if any.
    pub(crate) fn signer(&self) -> Result<Option<PrivateKeySigner>, ConfigError> {
        if let Some(key) = &self.private_key {
            return parse_key(key.expose()).map(Some);
        }
        match std::env::var(PRIVATE_KEY_ENV) {
            Ok(key) if !key.trim().is_empty() => parse_key(key.trim()).map(Some),
            _ => Ok(None),
        }
    }

    /// The embedded chain id (the configured one, else 31337).
    pub fn embedded_chain_id(&self) -> u64 {
        self.chain_id.unwrap_or(DEFAULT_CHAIN_ID)
    }
}

/// `chain.fee_token`: what entry fees are paid in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FeeTokenSetting {
    /// `"eth"`.
    Eth,
    /// `"test"`: deploy a test token (dev chains only).
    Test,
    /// `"0x..."`: this ERC-20 token.
    Token(Address),
}

impl TryFrom<String> for FeeTokenSetting {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.trim() {
            t if t.eq_ignore_ascii_case("eth") => Ok(Self::Eth),
            t if t.eq_ignore_ascii_case("test") => Ok(Self::Test),
            t => t.parse::<Address>().map(Self::Token).map_err(|_| {
                format!(
                    "{:?} is not \"eth\", \"test\" or a 0x-prefixed 20-byte \
                     token address",
                    t.chars().take(60).collect::<String>()
                )
            }),
        }
    }
}

impl From<FeeTokenSetting> for String {
    fn from(setting: FeeTokenSetting) -> String {
        match setting {
            FeeTokenSetting::Eth => "eth".into(),
            FeeTokenSetting::Test => "test".into(),
            FeeTokenSetting::Token(address) => address.to_string(),
        }
    }
}

fn check_url(url: &str) -> Result<(), ConfigError> {
    let parsed: alloy::transports::http::reqwest::Url = url
        .parse()
        .map_err(|e| invalid("rpc_url", format!("not a URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(invalid(
            "rpc_url",
            format!("scheme {other:?} is not http or https"),
        )),
    }
}

fn parse_key(key: &str) -> Result<PrivateKeySigner, ConfigError> {
    // The error never echoes the key.
    key.parse::<PrivateKeySigner>()
        .map_err(|_| invalid("private_key", "not a 32-byte hex secp256k1 private key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let cfg = ChainConfig::default();
        assert_eq!(cfg.backend, Backend::Embedded);
        cfg.validate().unwrap();
        assert_eq!(cfg.embedded_chain_id(), 31337);
    }

    #[test]
    fn parses_toml_and_rejects_unknown_keys() {
        let cfg: ChainConfig = serde_json::from_value(serde_json::json!({
            "backend": "rpc",
            "rpc_url": "http://127.0.0.1:8545",
            "private_key": format!("0x{}", "11".repeat(32)),
            "chain_id": 31337,
            "treasury": "0x00000000000000000000000000000000000000aa"
        }))
        .unwrap();
        cfg.validate().unwrap();
        assert!(
            !format!("{cfg:?}").contains("1111"),
            "Debug must not show the key"
        );
        let unknown = serde_json::from_value::<ChainConfig>(serde_json::json!({ "rpc": "x" }));
        assert!(unknown.is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let rpc = |f: fn(&mut ChainConfig)| {
            let mut cfg = ChainConfig {
                backend: Backend::Rpc,
                rpc_url: Some("https://node.example".into()),
                private_key: Some(Secret::new("22".repeat(32))),
                ..ChainConfig::default()
            };
            f(&mut cfg);
            cfg.validate().unwrap_err().key
        };
        assert_eq!(rpc(|c| c.rpc_url = None), "rpc_url");
        assert_eq!(rpc(|c| c.rpc_url = Some("ftp://x".into())), "rpc_url");
        assert_eq!(rpc(|c| c.rpc_url = Some("not a url".into())), "rpc_url");
        assert_eq!(
            rpc(|c| c.private_key = Some(Secret::new("xyz"))),
            "private_key"
        );
        assert_eq!(rpc(|c| c.chain_id = Some(0)), "chain_id");
        assert_eq!(rpc(|c| c.operator = Some(Address::ZERO)), "operator");
        assert_eq!(
            rpc(|c| c.arena_address = Some(Address::repeat_byte(1))),
            "proof_of_learning_address"
        );
        assert_eq!(rpc(|c| c.dev_accounts = 0), "dev_accounts");
        assert_eq!(rpc(|c| c.receipt_timeout_secs = 0), "receipt_timeout_secs");
        let err = rpc(|c| c.private_key = Some(Secret::new("zz")));
        assert_eq!(err, "private_key");
        // A test token is only for dev chains, and only when this process deploys.
        assert_eq!(
            rpc(|c| c.fee_token = Some(FeeTokenSetting::Test)),
            "fee_token"
        );
        assert_eq!(
            rpc(|c| c.fee_token = Some(FeeTokenSetting::Token(Address::ZERO))),
            "fee_token"
        );
        let mut dev = ChainConfig {
            fee_token: Some(FeeTokenSetting::Test),
            ..ChainConfig::default()
        };
        dev.validate().unwrap();
        dev.arena_address = Some(Address::repeat_byte(1));
        dev.proof_of_learning_address = Some(Address::repeat_byte(2));
        assert_eq!(dev.validate().unwrap_err().key, "fee_token");
    }

    #[test]
    fn fee_token_reads_eth_test_or_an_address() {
        let read = |v: &str| {
            serde_json::from_value::<ChainConfig>(serde_json::json!({ "fee_token": v }))
                .map(|c| c.fee_token)
        };
        assert_eq!(read("eth").unwrap(), Some(FeeTokenSetting::Eth));
        assert_eq!(read("TEST").unwrap(), Some(FeeTokenSetting::Test));
        let usdc = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
        assert_eq!(
            read(usdc).unwrap(),
            Some(FeeTokenSetting::Token(usdc.parse().unwrap()))
        );
        let err = read("usdc").unwrap_err().to_string();
        assert!(
            err.contains("\"usdc\" is not") && err.contains("token address"),
            "{err}"
        );
        assert_eq!(
            String::from(FeeTokenSetting::Token(usdc.parse().unwrap())),
            usdc
        );
    }
}
