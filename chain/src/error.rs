//! Errors of the chain layer. A reverted call surfaces as [`ChainError::Reverted`] holding
//! a [`Revert`] decoded into the contracts' own custom errors, the same way for both
//! backends, so callers match on `ArenaErrors::InsufficientBalance(..)` and not on text.

use std::path::PathBuf;

use alloy::primitives::{Address, B256, Bytes};
use alloy::sol_types::{Panic, Revert as RevertString, SolError, SolInterface};

use crate::bindings::{
    Arena::ArenaErrors, ProofOfLearning::ProofOfLearningErrors, TestToken::TestTokenErrors,
    TokenArena::TokenArenaErrors,
};

/// Why a call reverted, decoded from its revert data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// A custom error of the Arena contract.
    Arena(ArenaErrors),
    /// A custom error only the token Arena has (a refused token transfer).
    TokenArena(TokenArenaErrors),
    /// A custom error of the test fee token.
    Token(TestTokenErrors),
    /// A custom error of the ProofOfLearning contract.
    ProofOfLearning(ProofOfLearningErrors),
    /// `Error(string)`, from `require` or `revert("...")`.
    Message(String),
    /// `Panic(uint256)`: an assertion, overflow or out-of-bounds access.
    Panic(u64),
    /// Revert data that matches none of the above (possibly empty).
    Other(Bytes),
}

impl Revert {
    /// Decodes revert data into the most specific variant that fits.
    pub(crate) fn decode(data: &[u8]) -> Self {
        if let Ok(e) = ArenaErrors::abi_decode(data) {
            return Self::Arena(e);
        }
        if let Ok(e) = TokenArenaErrors::abi_decode(data) {
            return Self::TokenArena(e);
        }
        if let Ok(e) = ProofOfLearningErrors::abi_decode(data) {
            return Self::ProofOfLearning(e);
        }
        if let Ok(e) = TestTokenErrors::abi_decode(data) {
            return Self::Token(e);
        }
        if let Ok(e) = RevertString::abi_decode(data) {
            return Self::Message(e.reason);
        }
        if let Ok(p) = Panic::abi_decode(data) {
            return Self::Panic(p.code.saturating_to::<u64>());
        }
        Self::Other(Bytes::copy_from_slice(data))
    }
}

impl std::fmt::Display for Revert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Arena(e) => write!(f, "Arena.{e:?}"),
            Self::TokenArena(e) => write!(f, "TokenArena.{e:?}"),
            Self::Token(e) => write!(f, "fee token: {e:?}"),
            Self::ProofOfLearning(e) => write!(f, "ProofOfLearning.{e:?}"),
            Self::Message(m) => write!(f, "{m}"),
            Self::Panic(code) => write!(f, "panic 0x{code:02x}"),
            Self::Other(data) if data.is_empty() => write!(f, "no reason given"),
            Self::Other(data) => write!(f, "unknown revert data {data}"),
        }
    }
}

/// Everything that can go wrong talking to a chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The call or transaction reverted; nothing was changed.
    #[error("reverted: {0}")]
    Reverted(Box<Revert>),
    /// The EVM rejected the transaction before running it (bad nonce, no funds for value, ...).
    #[error("transaction rejected: {0}")]
    Rejected(String),
    /// The chain is not the one the configuration names.
    #[error("chain id is {actual}, but the configuration expects {expected}")]
    ChainIdMismatch {
        /// The configured chain id.
        expected: u64,
        /// The chain's own id.
        actual: u64,
    },
    /// The backend holds no key for the sending account.
    #[error("no signing key for account {0}")]
    UnknownAccount(Address),
    /// The JSON-RPC transport or node failed.
    #[error("rpc: {0}")]
    Rpc(String),
    /// A transaction was sent but its receipt did not come in time: it may still be
    /// mined, or be dropped. Never treat it as refused.
    #[error(
        "transaction {tx_hash} was sent but is not confirmed ({reason}); it may still be mined"
    )]
    Unconfirmed {
        /// The sent transaction.
        tx_hash: B256,
        /// Why no receipt came.
        reason: String,
    },
    /// A transaction simulated fine but failed once mined.
    #[error("transaction {0} failed on chain")]
    FailedOnChain(B256),
    /// A value returned by the chain did not decode or fit.
    #[error("decode: {0}")]
    Decode(String),
    /// A contract address is missing (not deployed and not configured).
    #[error("{0} is not deployed: run `rlfc chain deploy` or set its address in the config")]
    NotDeployed(&'static str),
    /// Reading or writing the embedded chain's directory failed.
    #[error("embedded chain state at {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process (or another handle in this one) has the embedded chain open.
    #[error("the embedded chain in {0} is open in another process (one writer at a time)")]
    InUse(PathBuf),
    /// The embedded chain's saved state does not parse.
    #[error("embedded chain state at {path} is corrupt: {reason}")]
    CorruptState {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The configured Arena contract speaks an older version of the rules.
    #[error(
        "the Arena contract at {0} is not version {ver}: deploy the current contracts with \
         `rlfc chain deploy` and set chain.arena_address and chain.proof_of_learning_address \
         to them (users withdraw from the old contract with their own keys)",
        ver = crate::rules::ARENA_VERSION
    )]
    WrongArenaVersion(Address),
    /// The Arena found on the chain holds another fee asset than the configuration
    /// asks for.
    #[error(
        "chain.fee_token is {configured} but the Arena contract at {arena} holds {found}: \
         set chain.fee_token to match it, or use a new data directory (embedded) or deploy \
         new contracts (rpc) for the other asset"
    )]
    FeeAssetMismatch {
        /// The Arena contract.
        arena: Address,
        /// What the configuration says.
        configured: String,
        /// What the contract holds.
        found: String,
    },
    /// The chain configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl ChainError {
    /// The hash of a transaction that was sent but not confirmed, if this error is
    /// one: its outcome is unknown, so nothing may be undone on its account.
    pub fn unconfirmed(&self) -> Option<B256> {
        match self {
            Self::Unconfirmed { tx_hash, .. } => Some(*tx_hash),
            _ => None,
        }
    }

    /// The decoded revert, if this error is one.
    pub fn revert(&self) -> Option<&Revert> {
        match self {
            Self::Reverted(r) => Some(r),
            _ => None,
        }
    }

    /// The Arena custom error, if this is an Arena revert.
    pub fn arena_error(&self) -> Option<&ArenaErrors> {
        match self.revert() {
            Some(Revert::Arena(e)) => Some(e),
            _ => None,
        }
    }

    /// The ProofOfLearning custom error, if this is one of its reverts.
    pub fn pol_error(&self) -> Option<&ProofOfLearningErrors> {
        match self.revert() {
            Some(Revert::ProofOfLearning(e)) => Some(e),
            _ => None,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ChainError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Arena;
    use alloy::primitives::U256;

    #[test]
    fn decodes_custom_string_and_panic_reverts() {
        let e = Arena::InsufficientBalance {
            account: Address::repeat_byte(1),
            available: U256::from(1),
            required: U256::from(2),
        };
        let r = Revert::decode(&e.abi_encode());
        assert_eq!(r, Revert::Arena(ArenaErrors::InsufficientBalance(e)));
        let s = RevertString::from("nope".to_string()).abi_encode();
        assert_eq!(Revert::decode(&s), Revert::Message("nope".into()));
        let p = Panic {
            code: U256::from(0x11),
        }
        .abi_encode();
        assert_eq!(Revert::decode(&p), Revert::Panic(0x11));
        assert_eq!(Revert::decode(&[]), Revert::Other(Bytes::new()));
    }
}
