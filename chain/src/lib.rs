//! Chain layer of RLFC Arena: the Arena escrow and ProofOfLearning registry contracts,
//! their Rust bindings, one [`Chain`] interface with two backends (an embedded revm chain
//! that persists in the data directory, and any EVM JSON-RPC endpoint), a typed client
//! for the contracts ([`Contracts`]), the Merkle trees the contracts verify, and the
//! `rlfc chain ...` command handlers. (Tests start a Hardhat node with `testkit::hardhat`.)

pub mod any;
mod backend;
pub mod bindings;
pub mod config;
pub mod contracts;
pub mod dev;
pub mod embedded;
pub mod error;
pub mod gas;
pub mod merkle;
mod migrate;
mod rpc;
mod rules;

pub use alloy::primitives::{Address, B256};
pub use any::{AnyChain, open_chain, open_contracts};
pub use backend::{Chain, MinedLog, TxReceipt, TxRequest};
pub use config::{Backend, ChainConfig, ConfigError, FeeTokenSetting, Secret};
pub use contracts::{
    ArenaTerms, Contracts, Deployment, Escrow, FeeAsset, FeeUnit, LearningRecord, MatchStatus,
    NewRecord, Payout, RecordRoot, SpaceTerms, TEST_TOKEN_SYMBOL,
};
pub use embedded::Embedded;
pub use error::{ChainError, Revert};
pub use rpc::Rpc;
pub use rules::ARENA_VERSION;
