//! Dev accounts: deterministic keys that the embedded chain funds at genesis and that the
//! Hardhat test node is told to fund too, so both backends see the same addresses.
//! They are for local development only; their keys are derivable by anyone.

use alloy::primitives::{Address, keccak256};
use alloy::signers::local::PrivateKeySigner;

/// How many dev accounts the embedded chain funds by default.
pub const DEFAULT_DEV_ACCOUNTS: usize = 10;

/// Wei each dev account starts with (10,000 ETH).
pub const DEV_BALANCE_WEI: u128 = 10_000 * 10u128.pow(18);

/// The signer of dev account `index`: key `keccak256("rlfc-arena dev account <index>")`.
pub fn dev_signer(index: usize) -> PrivateKeySigner {
    let key = keccak256(format!("rlfc-arena dev account {index}"));
    // A keccak output is a valid secp256k1 scalar except with negligible probability;
    // the test below pins the first accounts.
    PrivateKeySigner::from_bytes(&key).expect("dev key is a valid secp256k1 scalar")
}

/// The first `n` dev signers.
pub fn dev_signers(n: usize) -> Vec<PrivateKeySigner> {
    (0..n).map(dev_signer).collect()
}

/// The first `n` dev account addresses.
pub fn dev_accounts(n: usize) -> Vec<Address> {
    (0..n).map(|i| dev_signer(i).address()).collect()
}

/// The first `n` dev private keys as 0x-hex, comma separated (for `RLFC_DEV_KEYS`).
pub fn dev_keys_env(n: usize) -> String {
    (0..n)
        .map(|i| format!("0x{}", alloy::hex::encode(dev_signer(i).to_bytes())))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_accounts_are_distinct_and_stable() {
        let a = dev_accounts(DEFAULT_DEV_ACCOUNTS);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), DEFAULT_DEV_ACCOUNTS);
        assert_eq!(a, dev_accounts(DEFAULT_DEV_ACCOUNTS));
        assert_eq!(dev_keys_env(2).split(',').count(), 2);
    }
}
