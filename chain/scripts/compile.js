#!/usr/bin/env node
// Compiles chain/contracts/*.sol offline with the pinned solc-js and writes
// chain/artifacts/<Contract>.json (ABI, creation bytecode, runtime bytecode).
//
//   node scripts/compile.js          regenerate the committed artifacts
//   node scripts/compile.js --check  exit 1 if the committed artifacts differ from a fresh compile
//
// The compiler version and EVM version are pinned here and in package.json; the
// embedded chain (revm, SpecId::CANCUN) and the Hardhat dev node (hardfork "cancun")
// run the same EVM version, so gas figures agree between the two backends.
'use strict';

const fs = require('fs');
const path = require('path');
const solc = require('solc');

const SOLC_VERSION = '0.8.26+commit.8a97fa7a.Emscripten.clang';
const EVM_VERSION = 'cancun';
// The deployable contracts, each in its own file; every .sol file in contracts/ is
// compiled (ArenaEscrow.sol is the abstract base both arenas import).
const CONTRACTS = ['Arena', 'TokenArena', 'TestToken', 'ProofOfLearning'];

// Test-only contracts, compiled the same way from tests/fixtures/<Name>.sol into
// tests/fixtures/<Name>.json (never deployed by the product).
const TEST_CONTRACTS = ['HookToken'];

const root = path.resolve(__dirname, '..');
const contractsDir = path.join(root, 'contracts');
const artifactsDir = path.join(root, 'artifacts');
const fixturesDir = path.join(root, 'tests', 'fixtures');

function compile() {
  if (solc.version() !== SOLC_VERSION) {
    throw new Error(`solc ${solc.version()} is installed, ${SOLC_VERSION} is pinned: run npm ci in chain/`);
  }
  const sources = {};
  for (const file of fs.readdirSync(contractsDir).filter((f) => f.endsWith('.sol')).sort()) {
    sources[file] = { content: fs.readFileSync(path.join(contractsDir, file), 'utf8') };
  }
  for (const name of TEST_CONTRACTS) {
    const file = `${name}.sol`;
    sources[file] = { content: fs.readFileSync(path.join(fixturesDir, file), 'utf8') };
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: true, runs: 200 },
      // No metadata hash: the bytecode then depends only on the code, not on comments,
      // paths or whitespace, so artifacts stay stable across machines.
      metadata: { bytecodeHash: 'none', appendCBOR: false },
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const e of output.errors || []) process.stderr.write(`${e.formattedMessage}\n`);
  if (errors.length > 0) throw new Error(`solc reported ${errors.length} error(s)`);

  const artifacts = {};
  for (const name of [...CONTRACTS, ...TEST_CONTRACTS]) {
    const c = output.contracts[`${name}.sol`][name];
    const artifact = {
      contractName: name,
      compiler: `solc-js ${SOLC_VERSION}`,
      evmVersion: EVM_VERSION,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
    };
    const dir = TEST_CONTRACTS.includes(name) ? fixturesDir : artifactsDir;
    artifacts[name] = { file: path.join(dir, `${name}.json`), text: `${JSON.stringify(artifact, null, 2)}\n` };
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes('--check');
  const artifacts = compile();
  let stale = 0;
  for (const [name, { file, text }] of Object.entries(artifacts)) {
    const shown = path.relative(root, file);
    if (check) {
      const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
      if (committed !== text) {
        process.stderr.write(`stale artifact: ${shown} (run node scripts/compile.js)\n`);
        stale += 1;
      }
    } else {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
      process.stdout.write(`wrote ${shown}\n`);
    }
  }
  if (stale > 0) process.exit(1);
  if (check) process.stdout.write('artifacts match the sources\n');
}

try {
  main();
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
