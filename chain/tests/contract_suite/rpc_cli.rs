//! The `rlfc chain` command handlers against the Hardhat node (RPC backend).

use alloy::primitives::Address;

/// `rlfc chain status | deploy | records` against the Hardhat node.
pub async fn cli_against_hardhat(url: &str) {
    use chain::cli::{ChainCommand, run_with_output};
    use chain::{Backend, ChainConfig, Secret};
    let key = format!(
        "0x{}",
        alloy::hex::encode(chain::dev::dev_signer(0).to_bytes())
    );
    let mut cfg = ChainConfig {
        backend: Backend::Rpc,
        rpc_url: Some(url.to_string()),
        private_key: Some(Secret::new(key)),
        chain_id: Some(31337),
        ..ChainConfig::default()
    };
    let data = tempfile::tempdir().unwrap();
    let run = |cmd: ChainCommand, cfg: ChainConfig| {
        let dir = data.path().to_path_buf();
        async move {
            let mut out = Vec::new();
            run_with_output(cmd, &cfg, &dir, &mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        }
    };
    let status = run(ChainCommand::Status, cfg.clone()).await;
    assert!(
        status.contains("backend:    rpc") && status.contains("not deployed"),
        "{status}"
    );
    let deployed = run(ChainCommand::Deploy, cfg.clone()).await;
    let address = |key: &str| -> Address {
        let line = deployed.lines().find(|l| l.starts_with(key)).unwrap();
        line.split('"').nth(1).unwrap().parse().unwrap()
    };
    cfg.arena_address = Some(address("arena_address"));
    cfg.proof_of_learning_address = Some(address("proof_of_learning_address"));
    let status = run(ChainCommand::Status, cfg.clone()).await;
    let operator = chain::dev::dev_signer(0).address();
    assert!(
        status.contains(&format!("operator:   {operator}")),
        "{status}"
    );
    let records = run(ChainCommand::Records { agent: None }, cfg.clone()).await;
    assert!(
        records.contains("no proof-of-learning records"),
        "{records}"
    );
    assert!(
        !format!("{cfg:?}").contains(&alloy::hex::encode(chain::dev::dev_signer(0).to_bytes()))
    );
}
