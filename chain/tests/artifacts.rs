//! The committed artifacts match the Solidity sources (a fresh solc-js compile with the
//! pinned compiler and EVM version), and the Rust bindings carry that same bytecode.

use testkit::hardhat as support;

use chain::bindings::{Arena, ProofOfLearning};

#[test]
fn committed_artifacts_match_a_fresh_compile() {
    let Some(node) = support::node() else {
        testkit::unavailable::<()>(
            "node (Node.js) is not available to run scripts/compile.js --check",
        );
        return;
    };
    if let Err(reason) = support::ensure_node_modules() {
        testkit::unavailable::<()>(&reason);
        return;
    }
    match support::artifacts_match(&node, &support::chain_dir()) {
        Ok(true) => {}
        Ok(false) => panic!("chain/artifacts are stale: run `node chain/scripts/compile.js`"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bindings_carry_the_committed_bytecode() {
    for (name, creation, runtime) in [
        ("Arena", &Arena::BYTECODE, &Arena::DEPLOYED_BYTECODE),
        (
            "ProofOfLearning",
            &ProofOfLearning::BYTECODE,
            &ProofOfLearning::DEPLOYED_BYTECODE,
        ),
    ] {
        let path = support::chain_dir().join(format!("artifacts/{name}.json"));
        let artifact: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(
            artifact["bytecode"].as_str().unwrap(),
            creation.to_string(),
            "{name}"
        );
        assert_eq!(
            artifact["deployedBytecode"].as_str().unwrap(),
            runtime.to_string(),
            "{name}"
        );
        assert_eq!(artifact["evmVersion"], "cancun");
    }
}
