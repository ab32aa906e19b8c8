//! On-disk form of the embedded chain, kept in one directory:
//!
//! - `blocks.jsonl`: one line per mined block: its receipts and logs, and the state it
//!   changed (balances, nonces, new code, written storage slots). Appending that line is
//!   the commit point of a transaction, so a write costs the size of the change, not of
//!   the whole state;
//! - `state.json`: a snapshot of every account at some block, rewritten atomically
//!   (temporary file, then rename) every [`SNAPSHOT_EVERY`] blocks and after a faucet
//!   grant, so a restart replays only the blocks after it.
//!
//! On load: snapshot, then the changes of every later block. A torn last line (a crash
//! mid-append) is dropped; any other damage is reported, never guessed around.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256, Bytes, U256};
use revm::bytecode::Bytecode;
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::KECCAK_EMPTY;
use revm::state::AccountInfo;
use serde::{Deserialize, Serialize};

use crate::backend::TxReceipt;
use crate::error::{ChainError, Result};

const STATE_FILE: &str = "state.json";
const BLOCKS_FILE: &str = "blocks.jsonl";
const LOCK_FILE: &str = "LOCK";

/// Blocks between two snapshots of the full state.
pub(crate) const SNAPSHOT_EVERY: u64 = 256;

/// One account as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedAccount {
    pub balance: U256,
    pub nonce: u64,
    #[serde(default, skip_serializing_if = "no_code")]
    pub code: Bytes,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage: BTreeMap<U256, U256>,
}

fn no_code(code: &Bytes) -> bool {
    code.is_empty()
}

/// What one block changed in one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountChange {
    /// The account was destroyed (everything else is then empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destroyed: bool,
    /// The account was created here: drop any storage it had before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    pub balance: U256,
    pub nonce: u64,
    /// New code, only when the account was created with code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Bytes>,
    /// Slots written, with their new values (zero means cleared).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage: BTreeMap<U256, U256>,
}

/// What one block changed, by account.
pub(crate) type StateChange = BTreeMap<Address, AccountChange>;

/// One line of `blocks.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BlockLine {
    pub block: Block,
    pub change: StateChange,
}

/// The whole world state plus the head block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedState {
    pub chain_id: u64,
    pub head: u64,
    pub head_timestamp: u64,
    pub accounts: BTreeMap<Address, SavedAccount>,
}

/// A mined block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Block {
    /// Height, starting at 1 (block 0 is the genesis state).
    pub number: u64,
    /// Unix seconds.
    pub timestamp: u64,
    /// keccak256 over the parent hash, number, timestamp and transaction hashes.
    pub hash: B256,
    /// The previous block's hash (zero for block 1).
    pub parent_hash: B256,
    /// The receipts of the block's transactions, in order.
    pub receipts: Vec<TxReceipt>,
}

impl SavedState {
    /// Captures the accounts of `db` that exist.
    pub(crate) fn capture(
        db: &CacheDB<EmptyDB>,
        chain_id: u64,
        head: u64,
        head_timestamp: u64,
    ) -> Self {
        let mut accounts = BTreeMap::new();
        for (address, account) in &db.cache.accounts {
            let Some(info) = account.info() else { continue };
            let storage: BTreeMap<U256, U256> = account
                .storage
                .iter()
                .filter(|(_, v)| !v.is_zero())
                .map(|(k, v)| (*k, *v))
                .collect();
            let code = match &info.code {
                Some(code) if !code.is_empty() => code.original_bytes(),
                _ => db
                    .cache
                    .contracts
                    .get(&info.code_hash)
                    .map(|c| c.original_bytes())
                    .unwrap_or_default(),
            };
            if info.balance.is_zero() && info.nonce == 0 && code.is_empty() && storage.is_empty() {
                continue;
            }
            let saved = SavedAccount {
                balance: info.balance,
                nonce: info.nonce,
                code,
                storage,
            };
            accounts.insert(*address, saved);
        }
        Self {
            chain_id,
            head,
            head_timestamp,
            accounts,
        }
    }

    /// Applies the changes of block `number` on top of this state.
    pub(crate) fn apply(&mut self, number: u64, change: &StateChange) {
        for (address, c) in change {
            if c.destroyed {
                self.accounts.remove(address);
                continue;
            }
            let account = self
                .accounts
                .entry(*address)
                .or_insert_with(|| SavedAccount {
                    balance: U256::ZERO,
                    nonce: 0,
                    code: Bytes::new(),
                    storage: BTreeMap::new(),
                });
            if c.created {
                account.storage.clear();
            }
            account.balance = c.balance;
            account.nonce = c.nonce;
            if let Some(code) = &c.code {
                account.code = code.clone();
            }
            for (slot, value) in &c.storage {
                if value.is_zero() {
                    account.storage.remove(slot);
                } else {
                    account.storage.insert(*slot, *value);
                }
            }
            // An empty account does not exist (EIP-161), as in a snapshot.
            let empty = account.balance.is_zero()
                && account.nonce == 0
                && account.code.is_empty()
                && account.storage.is_empty();
            if empty {
                self.accounts.remove(address);
            }
        }
        self.head = number;
    }

    /// Rebuilds an in-memory database from the saved accounts.
    pub(crate) fn to_db(&self) -> CacheDB<EmptyDB> {
        let mut db = CacheDB::new(EmptyDB::default());
        for (address, account) in &self.accounts {
            let mut info = AccountInfo {
                balance: account.balance,
                nonce: account.nonce,
                code_hash: KECCAK_EMPTY,
                ..Default::default()
            };
            if !account.code.is_empty() {
                let code = Bytecode::new_raw(account.code.clone());
                info.code_hash = code.hash_slow();
                info.code = Some(code);
            }
            db.insert_account_info(*address, info);
            for (slot, value) in &account.storage {
                db.insert_account_storage(*address, *slot, *value)
                    .expect("EmptyDB never fails");
            }
        }
        db
    }
}

/// The chain's directory, locked for as long as this value lives.
#[derive(Debug)]
pub(crate) struct ChainDir {
    dir: PathBuf,
    /// An exclusive advisory lock on `LOCK`: two processes appending to one chain
    /// would fork its history, so a second opener is refused instead.
    _lock: fs::File,
}

impl ChainDir {
    /// Uses (and creates) `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs::File::create(&lock_path).map_err(|source| io_err(&lock_path, source))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(ChainError::InUse(dir.to_path_buf())),
            Err(fs::TryLockError::Error(source)) => return Err(io_err(&lock_path, source)),
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Loads the state (snapshot plus later changes) and every block, or `None` for a
    /// fresh directory.
    pub(crate) fn load(&self) -> Result<Option<(SavedState, Vec<Block>)>> {
        let state_path = self.dir.join(STATE_FILE);
        let text = match fs::read_to_string(&state_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let blocks = self.dir.join(BLOCKS_FILE);
                if fs::metadata(&blocks).is_ok_and(|m| m.len() > 0) {
                    let reason = format!(
                        "{} has blocks but {STATE_FILE} is missing",
                        blocks.display()
                    );
                    return Err(ChainError::CorruptState {
                        path: state_path,
                        reason,
                    });
                }
                return Ok(None);
            }
            Err(source) => return Err(io_err(&state_path, source)),
        };
        let mut state: SavedState =
            serde_json::from_str(&text).map_err(|e| corrupt(&state_path, e))?;
        let snapshot_head = state.head;
        let blocks_path = self.dir.join(BLOCKS_FILE);
        let blocks_text = match fs::read_to_string(&blocks_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(io_err(&blocks_path, source)),
        };
        let mut blocks = Vec::new();
        let lines: Vec<&str> = blocks_text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let parsed = match serde_json::from_str::<BlockLine>(line) {
                Ok(parsed) => parsed,
                // Only the last line can be torn by a crash mid-append.
                Err(_) if i + 1 == lines.len() => break,
                Err(e) => return Err(corrupt(&blocks_path, e)),
            };
            let number = parsed.block.number;
            if number != blocks.len() as u64 + 1 {
                let reason = format!("block {number} follows block {}", blocks.len());
                return Err(ChainError::CorruptState {
                    path: blocks_path,
                    reason,
                });
            }
            if number > snapshot_head {
                state.apply(number, &parsed.change);
                state.head_timestamp = parsed.block.timestamp;
            }
            blocks.push(parsed.block);
        }
        if (blocks.len() as u64) < snapshot_head {
            let reason = format!(
                "the snapshot is at block {snapshot_head} but only {} blocks are saved",
                blocks.len()
            );
            return Err(ChainError::CorruptState {
                path: blocks_path,
                reason,
            });
        }
        Ok(Some((state, blocks)))
    }

    /// Appends a mined block and the state it changed: the commit point.
    pub(crate) fn append_block(&self, block: &Block, change: &StateChange) -> Result<()> {
        let path = self.dir.join(BLOCKS_FILE);
        let line = BlockLine {
            block: block.clone(),
            change: change.clone(),
        };
        let mut text = serde_json::to_string(&line).map_err(|e| corrupt(&path, e))?;
        text.push('\n');
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| io_err(&path, source))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|source| io_err(&path, source))
    }

    /// Replaces the saved state atomically.
    pub(crate) fn save_state(&self, state: &SavedState) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec(state).map_err(|e| corrupt(&path, e))?;
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_data()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| io_err(&path, source))
    }

    /// Drops anything after the first `count` lines of the block file (a torn tail).
    pub(crate) fn truncate_blocks(&self, count: usize) -> Result<()> {
        let path = self.dir.join(BLOCKS_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(io_err(&path, source)),
        };
        let keep: usize = text.split_inclusive('\n').take(count).map(str::len).sum();
        // A last good line may lack its newline if the crash came between the two.
        let newline = keep > 0 && !text[..keep].ends_with('\n');
        if keep == text.len() && !newline {
            return Ok(());
        }
        let fix = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(keep as u64)?;
            if newline {
                use std::io::Seek;
                file.seek(std::io::SeekFrom::End(0))?;
                file.write_all(b"\n")?;
            }
            file.sync_data()
        };
        fix().map_err(|source| io_err(&path, source))
    }

    /// Reads a small JSON side file (e.g. the deployment) if present.
    pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let path = self.dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| corrupt(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_err(&path, source)),
        }
    }

    /// Writes a small JSON side file.
    pub(crate) fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.dir.join(name);
        let text = serde_json::to_vec_pretty(value).map_err(|e| corrupt(&path, e))?;
        fs::write(&path, text).map_err(|source| io_err(&path, source))
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ChainError {
    ChainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, e: serde_json::Error) -> ChainError {
    ChainError::CorruptState {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}
