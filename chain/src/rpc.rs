//! The JSON-RPC backend: any EVM node reachable over HTTP(S), signing locally with
//! private keys that are never logged.
//!
//! Nonces: alloy's default cached nonce manager goes out of step when a transaction
//! fails during gas estimation. Here every send is first simulated with `eth_call` (so a
//! revert comes back typed and nothing is sent), sends are serialized, and the nonce is
//! read fresh from the node (`pending`) for each transaction. Several processes may sign
//! with one key (API servers and workers all act as the Arena operator): when another
//! one took the nonce first, the node refuses the transaction and it is resent with a
//! fresh nonce (see [`is_nonce_conflict`]).

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{RpcError, TransportErrorKind};

use crate::backend::{Chain, MinedLog, TxReceipt, TxRequest};

/// How often a send is retried when another sender took its nonce.
const NONCE_RETRIES: u32 = 8;

/// Whether a node refused a transaction because its nonce was already used (by
/// another process signing with the same key). Such a transaction was never accepted,
/// so it can be resent with a fresh nonce. "already known" is not one of these: that
/// is this very transaction, already in the pool.
fn is_nonce_conflict(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("nonce too low")
        || m.contains("nonce has already been used")
        || m.contains("replacement transaction underpriced")
}
use crate::error::{ChainError, Result, Revert};

/// A chain reached over JSON-RPC.
pub struct Rpc {
    provider: DynProvider,
    accounts: Vec<Address>,
    send_lock: tokio::sync::Mutex<()>,
    receipt_timeout: Duration,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither keys nor the URL (which often carries an API key) are shown.
        f.debug_struct("Rpc")
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

impl Rpc {
    /// Sends a raw JSON-RPC request, for a dev node's own methods (Hardhat's
    /// `evm_setAutomine`, `evm_mine`, `hardhat_dropTransaction`) in tests.
    pub async fn dev_request(
        &self,
        method: &'static str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.provider
            .raw_request::<_, serde_json::Value>(method.into(), params)
            .await
            .map_err(rpc_error)
    }

    /// Connects to `url`, signing with `signers` (the first is the default sender). If
    /// `expected_chain_id` is given, the node must report it.
    pub async fn connect(
        url: &str,
        signers: Vec<PrivateKeySigner>,
        expected_chain_id: Option<u64>,
        receipt_timeout: Duration,
    ) -> Result<Self> {
        let url: alloy::transports::http::reqwest::Url = url
            .parse()
            .map_err(|e| ChainError::Rpc(format!("invalid RPC URL: {e}")))?;
        let accounts: Vec<Address> = signers.iter().map(|s| s.address()).collect();
        let mut signers = signers.into_iter();
        let first = signers
            .next()
            .ok_or_else(|| ChainError::Rpc("the RPC backend needs a private key".into()))?;
        let mut wallet = EthereumWallet::new(first);
        for signer in signers {
            wallet.register_signer(signer);
        }
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(wallet)
            .connect_http(url)
            .erased();
        let rpc = Self {
            provider,
            accounts,
            send_lock: tokio::sync::Mutex::new(()),
            receipt_timeout,
        };
        if let Some(expected) = expected_chain_id {
            let actual = rpc.chain_id().await?;
            if actual != expected {
                return Err(ChainError::ChainIdMismatch { expected, actual });
            }
        }
        Ok(rpc)
    }

    fn request(&self, tx: &TxRequest) -> TransactionRequest {
        let req = TransactionRequest::default()
            .with_from(tx.from)
            .with_input(tx.data.clone())
            .with_value(tx.value);
        match tx.to {
            Some(to) => req.with_to(to),
            None => req.into_create(),
        }
    }
}

/// Turns a transport error into a typed revert when the node reports one.
fn rpc_error(e: RpcError<TransportErrorKind>) -> ChainError {
    if let Some(payload) = e.as_error_resp() {
        if let Some(data) = payload.as_revert_data() {
            return ChainError::Reverted(Box::new(Revert::decode(&data)));
        }
        if payload.message.to_lowercase().contains("revert") {
            return ChainError::Reverted(Box::new(Revert::Message(payload.message.to_string())));
        }
    }
    ChainError::Rpc(e.to_string())
}

fn to_receipt(r: &TransactionReceipt) -> TxReceipt {
    TxReceipt {
        tx_hash: r.transaction_hash,
        block_number: r.block_number.unwrap_or_default(),
        from: r.from,
        to: r.to,
        contract_address: r.contract_address,
        gas_used: r.gas_used,
        effective_gas_price: r.effective_gas_price,
        logs: r.logs().iter().map(|l| l.inner.clone()).collect(),
    }
}

impl Chain for Rpc {
    fn backend_name(&self) -> &'static str {
        "rpc"
    }

    fn accounts(&self) -> Vec<Address> {
        self.accounts.clone()
    }

    async fn chain_id(&self) -> Result<u64> {
        self.provider.get_chain_id().await.map_err(rpc_error)
    }

    async fn block_number(&self) -> Result<u64> {
        self.provider.get_block_number().await.map_err(rpc_error)
    }

    async fn balance(&self, account: Address) -> Result<U256> {
        self.provider.get_balance(account).await.map_err(rpc_error)
    }

    async fn call(&self, tx: TxRequest) -> Result<Bytes> {
        self.provider
            .call(self.request(&tx))
            .await
            .map_err(rpc_error)
    }

    async fn send(&self, tx: TxRequest) -> Result<TxReceipt> {
        if !self.accounts.contains(&tx.from) {
            return Err(ChainError::UnknownAccount(tx.from));
        }
        let request = self.request(&tx);
        // Held from simulation to receipt: one transaction in flight per backend keeps
        // the node's pending nonce exact and the simulation close to the real state.
        let _guard = self.send_lock.lock().await;
        let mut attempt = 0u32;
        let pending = loop {
            self.provider
                .call(request.clone())
                .await
                .map_err(rpc_error)?;
            match self.provider.send_transaction(request.clone()).await {
                Ok(p) => break p,
                // Another process signing with the same key took this nonce between
                // our read and our send: the node refused ours, nothing was sent, so
                // it is safe to read the nonce again and resend.
                Err(e) if attempt < NONCE_RETRIES && is_nonce_conflict(&e.to_string()) => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "nonce taken by another sender; retrying");
                    let jitter = u64::from(std::process::id() % 7) * 5 + u64::from(attempt) * 20;
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(e) => return Err(rpc_error(e)),
            }
        };
        let hash = *pending.tx_hash();
        let receipt = pending
            .with_timeout(Some(self.receipt_timeout))
            .get_receipt()
            .await
            .map_err(|e| ChainError::Unconfirmed {
                tx_hash: hash,
                reason: format!("waiting for its receipt: {e}"),
            })?;
        if !receipt.status() {
            return Err(ChainError::FailedOnChain(hash));
        }
        let receipt = to_receipt(&receipt);
        tracing::debug!(tx = %hash, block = receipt.block_number, gas = receipt.gas_used, "rpc transaction mined");
        Ok(receipt)
    }

    async fn receipt(&self, tx_hash: B256) -> Result<Option<TxReceipt>> {
        let r = self
            .provider
            .get_transaction_receipt(tx_hash)
            .await
            .map_err(rpc_error)?;
        Ok(r.as_ref().map(to_receipt))
    }

    async fn logs_between(
        &self,
        address: Address,
        from_block: u64,
        to_block: u64,
    ) -> Result<Vec<MinedLog>> {
        let filter = Filter::new()
            .address(address)
            .from_block(from_block)
            .to_block(to_block);
        let logs = self.provider.get_logs(&filter).await.map_err(rpc_error)?;
        Ok(logs
            .into_iter()
            .map(|l| MinedLog {
                block_number: l.block_number.unwrap_or_default(),
                tx_hash: l.transaction_hash.unwrap_or_default(),
                log: l.inner,
            })
            .collect())
    }

    async fn transaction_known(&self, tx_hash: B256) -> Result<bool> {
        let tx = self
            .provider
            .get_transaction_by_hash(tx_hash)
            .await
            .map_err(rpc_error)?;
        Ok(tx.is_some())
    }

    async fn logs(&self, address: Address, from_block: u64) -> Result<Vec<MinedLog>> {
        let filter = Filter::new().address(address).from_block(from_block);
        let logs = self.provider.get_logs(&filter).await.map_err(rpc_error)?;
        Ok(logs
            .into_iter()
            .map(|l| MinedLog {
                block_number: l.block_number.unwrap_or_default(),
                tx_hash: l.transaction_hash.unwrap_or_default(),
                log: l.inner,
            })
            .collect())
    }

    async fn fund(&self, to: Address, amount: U256) -> Result<()> {
        let from = *self
            .accounts
            .first()
            .ok_or(ChainError::UnknownAccount(Address::ZERO))?;
        self.send(TxRequest {
            from,
            to: Some(to),
            data: Bytes::new(),
            value: amount,
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::is_nonce_conflict;

    #[test]
    fn only_a_taken_nonce_is_retried() {
        for m in [
            "server returned an error response: error code -32000: Nonce too low. Expected nonce to be 29 but got 28.",
            "nonce has already been used",
            "replacement transaction underpriced",
        ] {
            assert!(is_nonce_conflict(m), "{m}");
        }
        for m in [
            "already known",
            "insufficient funds for gas * price + value",
            "execution reverted",
        ] {
            assert!(!is_nonce_conflict(m), "{m}");
        }
    }
}
