//! `rlfc chain status | deploy | declare-space | pause | resume | records [--agent ID]`:
//! the `chain` crate's contracts
//! and backends, driven from the command line (this command lives in the binary, so the
//! library crate needs neither clap nor anyhow).

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;

use chain::any::{self, AnyChain};
use chain::{Backend, Chain, ChainConfig, ChainError, Contracts, Deployment, LearningRecord};

/// The `rlfc chain` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ChainCommand {
    /// Show the backend, chain id, block, operator and contract addresses.
    Status,
    /// Deploy the Arena and ProofOfLearning contracts (for an RPC chain).
    Deploy,
    /// As the Arena admin, declare a Space's rake (basis points of each pot): no fee
    /// of that Space can be locked before, and settlements must pay out the rest.
    DeclareSpace {
        /// The Space's id (as `rlfc` stores it; see the Spaces API).
        space_id: u64,
        /// Its rake in basis points, 0 to 10000 (its rulebook's `payout.rake_bps`).
        rake_bps: u16,
    },
    /// As the Arena admin, stop the locking of new entry fees (settling, refunds,
    /// reclaims, deposits and withdrawals go on).
    Pause,
    /// As the Arena admin, let entry fees be locked again.
    Resume,
    /// Read proof-of-learning records back from the chain.
    Records {
        /// Only the records of this agent id.
        #[arg(long)]
        agent: Option<u64>,
    },
}

/// Runs `cmd`, printing to stdout.
pub async fn run(cmd: ChainCommand, cfg: &ChainConfig, data_dir: &Path) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    run_with_output(cmd, cfg, data_dir, &mut out).await
}

/// Runs `cmd`, printing to `out`.
pub async fn run_with_output(
    cmd: ChainCommand,
    cfg: &ChainConfig,
    data_dir: &Path,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match cmd {
        ChainCommand::Status => status(cfg, data_dir, out).await,
        ChainCommand::Deploy => deploy(cfg, data_dir, out).await,
        ChainCommand::DeclareSpace { space_id, rake_bps } => {
            if rake_bps > 10_000 {
                anyhow::bail!("rake_bps: {rake_bps} is out of range, expected 0 to 10000");
            }
            let contracts = any::open_contracts(cfg, data_dir).await?;
            let admin = signing_admin(&contracts).await?;
            contracts.declare_space(admin, space_id, rake_bps).await?;
            writeln!(
                out,
                "space {space_id}: rake {rake_bps} bps declared by {admin}"
            )?;
            Ok(())
        }
        ChainCommand::Pause | ChainCommand::Resume => {
            let paused = cmd == ChainCommand::Pause;
            let contracts = any::open_contracts(cfg, data_dir).await?;
            let admin = signing_admin(&contracts).await?;
            contracts.set_paused(admin, paused).await?;
            let what = if paused { "paused" } else { "open again" };
            writeln!(out, "entries are {what}")?;
            Ok(())
        }
        ChainCommand::Records { agent } => records(cfg, data_dir, agent, out).await,
    }
}

/// The Arena admin, if this process can sign as it.
async fn signing_admin(contracts: &Contracts<AnyChain>) -> anyhow::Result<chain::Address> {
    let admin = contracts.admin().await?;
    if !contracts.chain().accounts().contains(&admin) {
        anyhow::bail!(
            "only the Arena admin {admin} may do this; sign with its key (chain.private_key or \
             {})",
            chain::config::PRIVATE_KEY_ENV
        );
    }
    Ok(admin)
}

async fn status(cfg: &ChainConfig, data_dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let contracts = match any::open_contracts(cfg, data_dir).await {
        Ok(contracts) => contracts,
        Err(ChainError::NotDeployed(_)) => {
            let chain = any::open_chain(cfg, data_dir).await?;
            print_chain(&chain, out).await?;
            writeln!(out, "contracts:  not deployed (run `rlfc chain deploy`)")?;
            return Ok(());
        }
        Err(e) => return Err(e).context("opening the chain"),
    };
    print_chain(contracts.chain(), out).await?;
    let d = contracts.deployment();
    writeln!(out, "arena:      {}", d.arena)?;
    writeln!(out, "pol:        {}", d.proof_of_learning)?;
    writeln!(out, "admin:      {}", contracts.admin().await?)?;
    writeln!(out, "operator:   {}", contracts.operator().await?)?;
    writeln!(out, "treasury:   {}", contracts.treasury().await?)?;
    writeln!(out, "version:    {}", contracts.arena_version().await?)?;
    let unit = contracts.fee_unit().await?;
    match d.fee_token {
        None => writeln!(out, "fees in:    ETH")?,
        Some(token) => writeln!(
            out,
            "fees in:    {} (ERC-20 {token}, {} decimals)",
            unit.symbol, unit.decimals
        )?,
    }
    writeln!(
        out,
        "entries:    {}",
        if contracts.paused().await? {
            "paused"
        } else {
            "open"
        }
    )?;
    writeln!(
        out,
        "reclaim:    entrants may reclaim an unfinished match's fees {} s after its first lock",
        contracts.reclaim_after_secs().await?
    )?;
    writeln!(
        out,
        "held:       {} (smallest units of {}) by the Arena",
        contracts.arena_funds().await?,
        unit.symbol
    )?;
    writeln!(out, "records:    {}", contracts.record_count().await?)?;
    Ok(())
}

async fn print_chain(chain: &AnyChain, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "backend:    {}", chain.backend_name())?;
    writeln!(out, "chain id:   {}", chain.chain_id().await?)?;
    writeln!(out, "block:      {}", chain.block_number().await?)?;
    Ok(())
}

/// The two `[chain]` config lines that name a deployment.
fn write_addresses(out: &mut impl Write, d: &Deployment) -> anyhow::Result<()> {
    writeln!(out, "arena_address = \"{}\"", d.arena)?;
    writeln!(
        out,
        "proof_of_learning_address = \"{}\"",
        d.proof_of_learning
    )?;
    Ok(())
}

async fn deploy(cfg: &ChainConfig, data_dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    if cfg.backend == Backend::Embedded {
        let contracts = any::open_contracts(cfg, data_dir).await?;
        let d = contracts.deployment();
        writeln!(
            out,
            "the embedded chain deploys its contracts on first use:"
        )?;
        write_addresses(out, &d)?;
        return Ok(());
    }
    let chain = any::open_chain(cfg, data_dir).await?;
    let deployer = any::default_sender(&chain)?;
    let terms = any::terms_of(cfg, &chain)?;
    if any::configured_deployment(cfg).is_some() {
        writeln!(
            out,
            "note: the config already names contract addresses; deploying a new pair"
        )?;
    }
    // No event of the new contracts can be older than the block after this one.
    let before = chain.block_number().await?;
    let contracts = any::deploy_configured(cfg, chain)
        .await
        .context("deploying the contracts")?;
    let d = contracts.deployment();
    writeln!(
        out,
        "deployed by {deployer} (the admin), operator {}, treasury {}, reclaim after {} s; \
         add to [chain] in the config:",
        terms.operator, terms.treasury, terms.reclaim_after_secs
    )?;
    write_addresses(out, &d)?;
    if let Some(token) = d.fee_token {
        writeln!(out, "fee_token = \"{token}\"")?;
    }
    writeln!(out, "start_block = {before}")?;
    Ok(())
}

async fn records(
    cfg: &ChainConfig,
    data_dir: &Path,
    agent: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let contracts = any::open_contracts(cfg, data_dir).await?;
    let list: Vec<LearningRecord> = match agent {
        Some(agent_id) => contracts.agent_records(agent_id).await?,
        None => {
            let count = contracts.record_count().await?;
            let mut list = Vec::with_capacity(count as usize);
            for id in 0..count {
                list.push(contracts.get_record(id).await?);
            }
            list
        }
    };
    if list.is_empty() {
        writeln!(out, "no proof-of-learning records")?;
    }
    for r in list {
        let f = &r.fields;
        writeln!(
            out,
            "record {} (agent {}, block {}, trainer {})",
            r.id, f.agent_id, r.block_number, r.trainer
        )?;
        writeln!(out, "  parent adapter   {}", f.parent_adapter_hash)?;
        writeln!(out, "  new adapter      {}", f.new_adapter_hash)?;
        writeln!(out, "  pairs root       {}", f.pairs_root)?;
        writeln!(out, "  results root     {}", f.results_root)?;
        writeln!(out, "  hyperparams hash {}", f.hyperparams_hash)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;
    use chain::contracts::NewRecord;

    async fn output(cmd: ChainCommand, cfg: &ChainConfig, dir: &Path) -> String {
        let mut buf = Vec::new();
        run_with_output(cmd, cfg, dir, &mut buf).await.unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[tokio::test]
    async fn status_deploy_and_records_on_the_embedded_chain() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ChainConfig::default();
        let status = output(ChainCommand::Status, &cfg, dir.path()).await;
        assert!(status.contains("backend:    embedded"), "{status}");
        assert!(status.contains("chain id:   31337"), "{status}");
        let deployed = output(ChainCommand::Deploy, &cfg, dir.path()).await;
        let arena_line = status.lines().find(|l| l.starts_with("arena:")).unwrap();
        let arena = arena_line.split_whitespace().last().unwrap();
        assert!(
            deployed.contains(arena),
            "deploy must report the same contracts: {deployed}"
        );
        assert!(
            output(ChainCommand::Records { agent: None }, &cfg, dir.path())
                .await
                .contains("no proof")
        );

        let contracts = any::open_contracts(&cfg, dir.path()).await.unwrap();
        let trainer = contracts.chain().accounts()[1];
        let rec = NewRecord {
            agent_id: 7,
            new_adapter_hash: B256::repeat_byte(9),
            ..NewRecord::default()
        };
        let admin = contracts.chain().accounts()[0];
        contracts.set_trainer(admin, trainer, true).await.unwrap();
        contracts.record(trainer, &rec).await.unwrap();
        drop(contracts);

        let all = output(ChainCommand::Records { agent: None }, &cfg, dir.path()).await;
        assert!(all.contains("record 0 (agent 7"), "{all}");
        let other = output(ChainCommand::Records { agent: Some(8) }, &cfg, dir.path()).await;
        assert!(other.contains("no proof"), "{other}");
    }

    #[tokio::test]
    async fn rpc_without_url_reports_the_key() {
        let cfg = ChainConfig {
            backend: Backend::Rpc,
            ..ChainConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let err = run_with_output(ChainCommand::Status, &cfg, dir.path(), &mut Vec::new())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("chain.rpc_url"), "{err:#}");
    }

    /// `rlfc chain status | deploy | records` against a Hardhat node (the RPC backend).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_deploy_and_records_on_a_hardhat_node() {
        use alloy::primitives::Address;
        let started = tokio::task::spawn_blocking(testkit::hardhat::HardhatNode::start)
            .await
            .unwrap();
        let node = match started {
            Ok(node) => node,
            Err(reason) => {
                testkit::unavailable::<()>(&reason);
                return;
            }
        };
        let url = node.url.clone();
        let url = url.as_str();
        use chain::Secret;
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
        let start: u64 = deployed
            .lines()
            .find_map(|l| l.strip_prefix("start_block = "))
            .expect("deploy prints the follower's start block")
            .parse()
            .unwrap();
        // The contract's first events (its constructor's) come after that block.
        let rpc = node.rpc().await;
        let arena = cfg.arena_address.unwrap();
        let head = rpc.block_number().await.unwrap();
        assert!(rpc.logs_between(arena, 0, start).await.unwrap().is_empty());
        assert!(
            !rpc.logs_between(arena, start + 1, head)
                .await
                .unwrap()
                .is_empty()
        );
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
        drop(node);
    }
}
