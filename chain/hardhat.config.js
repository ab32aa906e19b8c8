// Hardhat is used here only as a local JSON-RPC dev node (`hardhat node`) for the RPC
// backend's tests; contracts are compiled by scripts/compile.js, never by Hardhat.
// The node runs the same EVM version as the artifacts and the embedded chain (cancun).
// RLFC_DEV_KEYS (comma-separated hex private keys) lets the test fixture fund the same
// dev accounts the embedded chain uses; without it Hardhat's default accounts are used.
'use strict';

const devKeys = (process.env.RLFC_DEV_KEYS || '')
  .split(',')
  .map((k) => k.trim())
  .filter((k) => k.length > 0);

module.exports = {
  paths: { sources: './contracts', artifacts: './hardhat-artifacts', cache: './hardhat-cache' },
  networks: {
    hardhat: {
      chainId: 31337,
      hardfork: 'cancun',
      ...(devKeys.length > 0
        ? { accounts: devKeys.map((privateKey) => ({ privateKey, balance: '10000000000000000000000' })) }
        : {}),
    },
  },
};
