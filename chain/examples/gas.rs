//! Prints the gas used by each contract operation as a Markdown table, measured on the
//! embedded chain (Cancun rules, the committed bytecode):
//!
//!     cargo run -p chain --example gas

use chain::embedded::{DEFAULT_CHAIN_ID, Embedded};
use chain::gas;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let chain = Embedded::ephemeral(DEFAULT_CHAIN_ID, gas::PLAYERS + 2);
    let figures = gas::measure(chain).await?;
    print!("{}", gas::markdown_table(&figures));
    Ok(())
}
