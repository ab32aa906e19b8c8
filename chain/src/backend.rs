//! The one interface every chain backend implements: [`Chain`]. It is deliberately low
//! level (call, send, balances, blocks) so that the typed contract client in
//! [`crate::contracts`] is written once and behaves the same on the embedded revm chain
//! and on any JSON-RPC node.

use std::future::Future;

use alloy::primitives::{Address, B256, Bytes, Log, U256};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A call or transaction: `to == None` deploys `data` as init code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxRequest {
    /// The sender; the backend must hold its key (or, embedded, know it as a dev account).
    pub from: Address,
    /// The callee, or `None` to create a contract.
    pub to: Option<Address>,
    /// Calldata, or init code for a creation.
    pub data: Bytes,
    /// Wei sent along.
    pub value: U256,
}

/// A mined transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxReceipt {
    /// The transaction hash.
    pub tx_hash: B256,
    /// The block that holds it.
    pub block_number: u64,
    /// The sender.
    pub from: Address,
    /// The callee (`None` for a creation).
    pub to: Option<Address>,
    /// The created contract, for a creation.
    pub contract_address: Option<Address>,
    /// Gas used, as a receipt reports it (after refunds).
    pub gas_used: u64,
    /// Wei paid per unit of gas (zero on the embedded chain).
    pub effective_gas_price: u128,
    /// Event logs, in order.
    pub logs: Vec<Log>,
}

/// An event log together with where it was mined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinedLog {
    /// The block that holds the transaction.
    pub block_number: u64,
    /// The transaction that emitted the log.
    pub tx_hash: B256,
    /// The log itself (emitter, topics, data).
    pub log: Log,
}

/// An EVM chain the platform can read and write. Every method is safe to call
/// concurrently; sends from one account are serialized by the backend.
pub trait Chain: Send + Sync {
    /// Short name of the backend ("embedded" or "rpc").
    fn backend_name(&self) -> &'static str;

    /// Accounts this backend can send from.
    fn accounts(&self) -> Vec<Address>;

    /// The chain id.
    fn chain_id(&self) -> impl Future<Output = Result<u64>> + Send;

    /// The latest block number.
    fn block_number(&self) -> impl Future<Output = Result<u64>> + Send;

    /// The ETH balance of `account`, in wei.
    fn balance(&self, account: Address) -> impl Future<Output = Result<U256>> + Send;

    /// Runs `tx` against the latest state without changing it and returns its output.
    /// A revert comes back as [`crate::ChainError::Reverted`].
    fn call(&self, tx: TxRequest) -> impl Future<Output = Result<Bytes>> + Send;

    /// Simulates `tx`, then (only if the simulation succeeds) signs, sends and waits
    /// for its receipt. A revert comes back as [`crate::ChainError::Reverted`] and
    /// leaves no transaction behind, so nonces stay in step.
    fn send(&self, tx: TxRequest) -> impl Future<Output = Result<TxReceipt>> + Send;

    /// The receipt of a mined transaction, if this chain knows it.
    fn receipt(&self, tx_hash: B256) -> impl Future<Output = Result<Option<TxReceipt>>> + Send;

    /// Logs emitted by `address` from block `from_block` to the latest, oldest first.
    fn logs(
        &self,
        address: Address,
        from_block: u64,
    ) -> impl Future<Output = Result<Vec<MinedLog>>> + Send;

    /// Logs emitted by `address` in blocks `from_block..=to_block`, oldest first (one
    /// bounded query, as public RPC providers require).
    fn logs_between(
        &self,
        address: Address,
        from_block: u64,
        to_block: u64,
    ) -> impl Future<Output = Result<Vec<MinedLog>>> + Send;

    /// Whether the chain knows transaction `tx_hash` at all, mined or still waiting to
    /// be (false: never seen, or dropped).
    fn transaction_known(&self, tx_hash: B256) -> impl Future<Output = Result<bool>> + Send;
    /// Gives `to` `amount` wei: minted on the embedded chain, sent from the first
    /// account on an RPC chain.
    fn fund(&self, to: Address, amount: U256) -> impl Future<Output = Result<()>> + Send;
}

macro_rules! forward_chain {
    ($($ty:ty),*) => {$(
        impl<T: Chain + ?Sized> Chain for $ty {
            fn backend_name(&self) -> &'static str {
                (**self).backend_name()
            }
            fn accounts(&self) -> Vec<Address> {
                (**self).accounts()
            }
            fn chain_id(&self) -> impl Future<Output = Result<u64>> + Send {
                (**self).chain_id()
            }
            fn block_number(&self) -> impl Future<Output = Result<u64>> + Send {
                (**self).block_number()
            }
            fn balance(&self, account: Address) -> impl Future<Output = Result<U256>> + Send {
                (**self).balance(account)
            }
            fn call(&self, tx: TxRequest) -> impl Future<Output = Result<Bytes>> + Send {
                (**self).call(tx)
            }
            fn send(&self, tx: TxRequest) -> impl Future<Output = Result<TxReceipt>> + Send {
                (**self).send(tx)
            }
            fn receipt(&self, tx_hash: B256) -> impl Future<Output = Result<Option<TxReceipt>>> + Send {
                (**self).receipt(tx_hash)
            }
            fn logs(&self, address: Address, from_block: u64) -> impl Future<Output = Result<Vec<MinedLog>>> + Send {
                (**self).logs(address, from_block)
            }
            fn logs_between(&self, address: Address, from_block: u64, to_block: u64) -> impl Future<Output = Result<Vec<MinedLog>>> + Send {
                (**self).logs_between(address, from_block, to_block)
            }
            fn transaction_known(&self, tx_hash: B256) -> impl Future<Output = Result<bool>> + Send {
                (**self).transaction_known(tx_hash)
            }
            fn fund(&self, to: Address, amount: U256) -> impl Future<Output = Result<()>> + Send {
                (**self).fund(to, amount)
            }
        }
    )*};
}

// A shared chain (`&chain`, `Arc<chain>`) is a chain too, so one backend can serve
// several `Contracts` clients and services at once.
forward_chain!(&T, std::sync::Arc<T>);
