//! The embedded chain: an in-process EVM (revm, Cancun rules, the same bytecode as any
//! real chain) that mines one block per transaction, keeps blocks, receipts and logs,
//! and persists everything in a directory so a restart keeps every balance and record.
//!
//! Gas is metered exactly as on a real chain but priced at zero, so dev accounts never
//! run dry. Any address may send (like a dev node's impersonation); the contracts still
//! see it as `msg.sender`, so every access rule holds. A reverted transaction is not
//! mined, which matches the RPC backend's simulate-then-send behaviour.

mod store;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use revm::context::result::{ExecutionResult, Output};
use revm::context::{BlockEnv, Context, TxEnv};
use revm::database::{CacheDB, EmptyDB};
use revm::handler::MainnetContext;
use revm::primitives::hardfork::SpecId;
use revm::state::AccountInfo;
use revm::{Database, DatabaseCommit, ExecuteEvm, MainBuilder};
use std::collections::HashMap;

use store::{AccountChange, Block, ChainDir, SNAPSHOT_EVERY, SavedState, StateChange};

use crate::backend::{Chain, MinedLog, TxReceipt, TxRequest};
use crate::dev;
use crate::error::{ChainError, Result, Revert};

pub use crate::config::DEFAULT_CHAIN_ID;

const BLOCK_GAS_LIMIT: u64 = 30_000_000;

/// The in-process EVM chain.
#[derive(Debug)]
pub struct Embedded {
    state: Mutex<World>,
    dir: Option<ChainDir>,
    accounts: Vec<Address>,
}

#[derive(Debug)]
struct World {
    db: CacheDB<EmptyDB>,
    chain_id: u64,
    blocks: Vec<Block>,
    by_hash: HashMap<B256, (usize, usize)>,
    /// The block the last snapshot on disk was taken at.
    snapshot_head: u64,
}

/// A successful transaction as its block, before it joins the chain.
struct Mined {
    receipt: TxReceipt,
    block: Block,
    change: StateChange,
    state: revm::state::EvmState,
}

/// What one executed transaction did, before it is mined.
struct Executed {
    result: ExecutionResult,
    state: revm::state::EvmState,
}

impl Embedded {
    /// Opens the chain saved in `dir`, or creates it there with `dev_accounts` funded
    /// dev accounts on `chain_id` when the directory holds no chain yet. A saved chain
    /// with another id is refused ([`ChainError::ChainIdMismatch`]).
    pub fn open(dir: &Path, chain_id: u64, dev_accounts: usize) -> Result<Self> {
        let chain_dir = ChainDir::create(dir)?;
        let accounts = dev::dev_accounts(dev_accounts);
        let world = match chain_dir.load()? {
            Some((saved, blocks)) => {
                if saved.chain_id != chain_id {
                    return Err(ChainError::ChainIdMismatch {
                        expected: chain_id,
                        actual: saved.chain_id,
                    });
                }
                chain_dir.truncate_blocks(blocks.len())?;
                World::from_saved(&saved, blocks)
            }
            None => World::genesis(chain_id, &accounts),
        };
        // A fresh snapshot on every start keeps the next start's replay short.
        chain_dir.save_state(&world.capture())?;
        Ok(Self {
            state: Mutex::new(world),
            dir: Some(chain_dir),
            accounts,
        })
    }

    /// A chain that lives only in memory (tests, benchmarks).
    pub fn ephemeral(chain_id: u64, dev_accounts: usize) -> Self {
        let accounts = dev::dev_accounts(dev_accounts);
        let world = World::genesis(chain_id, &accounts);
        Self {
            state: Mutex::new(world),
            dir: None,
            accounts,
        }
    }

    /// The mined block at `number` (1-based), if any.
    #[cfg(test)]
    pub(crate) fn block(&self, number: u64) -> Option<Block> {
        let world = self.world();
        number
            .checked_sub(1)
            .and_then(|i| world.blocks.get(i as usize).cloned())
    }

    /// Reads a JSON side file from the chain's directory (none for an ephemeral chain).
    pub(crate) fn read_side_file<T: for<'de> serde::Deserialize<'de>>(
        &self,
        name: &str,
    ) -> Result<Option<T>> {
        match &self.dir {
            Some(dir) => dir.read_json(name),
            None => Ok(None),
        }
    }

    /// Writes a JSON side file into the chain's directory (no-op when ephemeral).
    pub(crate) fn write_side_file<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        match &self.dir {
            Some(dir) => dir.write_json(name, value),
            None => Ok(()),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock cannot leave the world half-written: state is
        // only replaced after a transaction has fully executed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a snapshot when enough blocks have passed since the last one. The blocks
    /// are already durable, so a failure here only costs replay time on the next start.
    fn snapshot_if_due(&self, world: &mut World) {
        let Some(dir) = &self.dir else { return };
        if world.head() < world.snapshot_head + SNAPSHOT_EVERY {
            return;
        }
        match dir.save_state(&world.capture()) {
            Ok(()) => world.snapshot_head = world.head(),
            Err(e) => tracing::warn!(error = %e, "embedded chain snapshot failed; will retry"),
        }
    }

    /// Saves a snapshot (after a change that is not a block, like a faucet grant).
    fn persist_snapshot(&self, world: &mut World) -> Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        dir.save_state(&world.capture())?;
        world.snapshot_head = world.head();
        Ok(())
    }
}

impl World {
    fn genesis(chain_id: u64, accounts: &[Address]) -> Self {
        let mut db = CacheDB::new(EmptyDB::default());
        for account in accounts {
            db.insert_account_info(
                *account,
                AccountInfo::from_balance(U256::from(dev::DEV_BALANCE_WEI)),
            );
        }
        Self {
            db,
            chain_id,
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            snapshot_head: 0,
        }
    }

    fn from_saved(saved: &SavedState, blocks: Vec<Block>) -> Self {
        let mut by_hash = HashMap::new();
        for (b, block) in blocks.iter().enumerate() {
            for (t, receipt) in block.receipts.iter().enumerate() {
                by_hash.insert(receipt.tx_hash, (b, t));
            }
        }
        Self {
            db: saved.to_db(),
            chain_id: saved.chain_id,
            blocks,
            by_hash,
            snapshot_head: saved.head,
        }
    }

    fn head(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn head_timestamp(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.timestamp)
    }

    fn capture(&self) -> SavedState {
        SavedState::capture(&self.db, self.chain_id, self.head(), self.head_timestamp())
    }

    fn account(&mut self, address: Address) -> AccountInfo {
        self.db.basic(address).ok().flatten().unwrap_or_default()
    }

    /// Runs `tx` on top of the current state as block `number` without committing.
    fn execute(
        &mut self,
        tx: &TxRequest,
        number: u64,
        timestamp: u64,
        is_call: bool,
    ) -> Result<Executed> {
        let nonce = self.account(tx.from).nonce;
        let chain_id = self.chain_id;
        let env = TxEnv::builder()
            .caller(tx.from)
            .kind(tx.to.map_or(TxKind::Create, TxKind::Call))
            .data(tx.data.clone())
            .value(tx.value)
            .nonce(nonce)
            .chain_id(Some(chain_id))
            .gas_limit(BLOCK_GAS_LIMIT)
            .gas_price(0)
            .build()
            .map_err(|e| ChainError::Rejected(format!("{e:?}")))?;
        let ctx: MainnetContext<&mut CacheDB<EmptyDB>> = Context::new(&mut self.db, SpecId::CANCUN);
        let mut evm = ctx
            .modify_cfg_chained(|cfg| {
                cfg.chain_id = chain_id;
                cfg.disable_nonce_check = is_call;
            })
            .with_block(BlockEnv {
                number: U256::from(number),
                timestamp: U256::from(timestamp),
                gas_limit: BLOCK_GAS_LIMIT,
                basefee: 0,
                prevrandao: Some(B256::ZERO),
                ..Default::default()
            })
            .build_mainnet();
        let out = evm
            .transact(env)
            .map_err(|e| ChainError::Rejected(e.to_string()))?;
        Ok(Executed {
            result: out.result,
            state: out.state,
        })
    }

    /// Runs `tx` as the next block; nothing changes until [`World::commit`].
    fn prepare(&mut self, tx: &TxRequest) -> Result<Mined> {
        let number = self.head() + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let timestamp = now.max(self.head_timestamp() + 1);
        let nonce = self.account(tx.from).nonce;
        let Executed { result, state } = self.execute(tx, number, timestamp, false)?;
        let gas_used = result.tx_gas_used();
        let (logs, contract_address) = match result {
            ExecutionResult::Success { output, logs, .. } => match output {
                Output::Create(_, address) => (logs, address),
                Output::Call(_) => (logs, None),
            },
            ExecutionResult::Revert { output, .. } => {
                return Err(ChainError::Reverted(Box::new(Revert::decode(&output))));
            }
            ExecutionResult::Halt { reason, .. } => {
                return Err(ChainError::Reverted(Box::new(Revert::Message(format!(
                    "halted: {reason:?}"
                )))));
            }
        };
        let change = state_change(&state);
        let tx_hash = tx_hash(self.chain_id, tx, nonce);
        let receipt = TxReceipt {
            tx_hash,
            block_number: number,
            from: tx.from,
            to: tx.to,
            contract_address,
            gas_used,
            effective_gas_price: 0,
            logs,
        };
        let parent_hash = self.blocks.last().map_or(B256::ZERO, |b| b.hash);
        let mut preimage = Vec::with_capacity(32 * 2 + 16);
        preimage.extend_from_slice(parent_hash.as_slice());
        preimage.extend_from_slice(&number.to_be_bytes());
        preimage.extend_from_slice(&timestamp.to_be_bytes());
        preimage.extend_from_slice(tx_hash.as_slice());
        let block = Block {
            number,
            timestamp,
            hash: keccak256(&preimage),
            parent_hash,
            receipts: vec![receipt.clone()],
        };
        Ok(Mined {
            receipt,
            block,
            change,
            state,
        })
    }

    /// Makes a prepared block part of the chain.
    fn commit(&mut self, mined: Mined) -> TxReceipt {
        self.db.commit(mined.state);
        self.by_hash
            .insert(mined.receipt.tx_hash, (self.blocks.len(), 0));
        self.blocks.push(mined.block);
        mined.receipt
    }
}

/// What a transaction changed, per account, in the form saved with its block.
fn state_change(state: &revm::state::EvmState) -> StateChange {
    let mut change = StateChange::new();
    for (address, account) in state.iter().filter(|(_, a)| a.is_touched()) {
        if account.is_selfdestructed() {
            change.insert(
                *address,
                AccountChange {
                    destroyed: true,
                    ..Default::default()
                },
            );
            continue;
        }
        let code = match &account.info.code {
            Some(code) if account.is_created() && !code.is_empty() => Some(code.original_bytes()),
            _ => None,
        };
        let storage = account
            .changed_storage_slots()
            .map(|(slot, value)| (*slot, value.present_value()))
            .collect();
        let entry = AccountChange {
            destroyed: false,
            created: account.is_created(),
            balance: account.info.balance,
            nonce: account.info.nonce,
            code,
            storage,
        };
        change.insert(*address, entry);
    }
    change
}

/// A transaction hash for the embedded chain: unique per (chain, sender, nonce).
fn tx_hash(chain_id: u64, tx: &TxRequest, nonce: u64) -> B256 {
    let mut preimage = Vec::with_capacity(8 + 20 + 8 + 20 + 32 + tx.data.len());
    preimage.extend_from_slice(&chain_id.to_be_bytes());
    preimage.extend_from_slice(tx.from.as_slice());
    preimage.extend_from_slice(&nonce.to_be_bytes());
    preimage.extend_from_slice(tx.to.unwrap_or_default().as_slice());
    preimage.extend_from_slice(&tx.value.to_be_bytes::<32>());
    preimage.extend_from_slice(&tx.data);
    keccak256(&preimage)
}

impl Chain for Embedded {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    fn accounts(&self) -> Vec<Address> {
        self.accounts.clone()
    }

    async fn chain_id(&self) -> Result<u64> {
        Ok(self.world().chain_id)
    }

    async fn block_number(&self) -> Result<u64> {
        Ok(self.world().head())
    }

    async fn balance(&self, account: Address) -> Result<U256> {
        Ok(self.world().account(account).balance)
    }

    async fn call(&self, tx: TxRequest) -> Result<Bytes> {
        let mut world = self.world();
        let (number, timestamp) = (world.head() + 1, world.head_timestamp() + 1);
        let Executed { result, .. } = world.execute(&tx, number, timestamp, true)?;
        match result {
            ExecutionResult::Success { output, .. } => Ok(output.into_data()),
            ExecutionResult::Revert { output, .. } => {
                Err(ChainError::Reverted(Box::new(Revert::decode(&output))))
            }
            ExecutionResult::Halt { reason, .. } => Err(ChainError::Reverted(Box::new(
                Revert::Message(format!("halted: {reason:?}")),
            ))),
        }
    }

    async fn send(&self, tx: TxRequest) -> Result<TxReceipt> {
        let mut world = self.world();
        let mined = world.prepare(&tx)?;
        // The block reaches disk before memory: a failed write leaves no trace anywhere.
        if let Some(dir) = &self.dir {
            dir.append_block(&mined.block, &mined.change)?;
        }
        let receipt = world.commit(mined);
        self.snapshot_if_due(&mut world);
        tracing::debug!(tx = %receipt.tx_hash, block = receipt.block_number, gas = receipt.gas_used, "embedded block mined");
        Ok(receipt)
    }

    async fn receipt(&self, tx_hash: B256) -> Result<Option<TxReceipt>> {
        let world = self.world();
        Ok(world
            .by_hash
            .get(&tx_hash)
            .map(|&(b, t)| world.blocks[b].receipts[t].clone()))
    }

    async fn logs_between(
        &self,
        address: Address,
        from_block: u64,
        to_block: u64,
    ) -> Result<Vec<MinedLog>> {
        let mut logs = self.logs(address, from_block).await?;
        logs.retain(|l| l.block_number <= to_block);
        Ok(logs)
    }

    async fn transaction_known(&self, tx_hash: B256) -> Result<bool> {
        // Every transaction is mined as it is sent: known means mined.
        Ok(self.receipt(tx_hash).await?.is_some())
    }

    async fn logs(&self, address: Address, from_block: u64) -> Result<Vec<MinedLog>> {
        let world = self.world();
        let start = from_block.saturating_sub(1) as usize;
        let mut out = Vec::new();
        for block in world.blocks.iter().skip(start) {
            for receipt in &block.receipts {
                for log in receipt.logs.iter().filter(|l| l.address == address) {
                    out.push(MinedLog {
                        block_number: block.number,
                        tx_hash: receipt.tx_hash,
                        log: log.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn fund(&self, to: Address, amount: U256) -> Result<()> {
        let mut world = self.world();
        let before = world.account(to);
        let mut info = before.clone();
        info.balance = info.balance.saturating_add(amount);
        world.db.insert_account_info(to, info);
        if let Err(e) = self.persist_snapshot(&mut world) {
            // Not on disk, so not in memory either.
            world.db.insert_account_info(to, before);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
