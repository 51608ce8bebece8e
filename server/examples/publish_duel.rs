//! A test helper for the end-to-end tests: writes a duel's figures to the models topic as the
//! referee does (`ModelsWriter::duel`), so the app's duel card can be checked without feeding
//! thousands of outcomes. Not a `churn` command: nothing acts on a duel record, and people
//! should only ever see the referee's.
//!
//! `cargo build -p server --example publish_duel`, then
//! `publish_duel 127.0.0.1:9092 < duel.json` (a `model::lifecycle::DuelStatus` as JSON).

use std::io::Read;

use anyhow::{Context, Result};
use model::lifecycle::DuelStatus;
use server::kafka::Kafka;
use server::model_store::ModelsWriter;

#[tokio::main]
async fn main() -> Result<()> {
    let brokers = std::env::args()
        .nth(1)
        .context("usage: publish_duel BROKERS < duel.json")?;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the duel from stdin")?;
    let duel: DuelStatus = serde_json::from_str(&text).context("not a duel (DuelStatus JSON)")?;
    ModelsWriter::new(&Kafka::at(brokers))?.duel(&duel).await?;
    println!(
        "published the duel {} vs {}",
        duel.champion, duel.challenger
    );
    Ok(())
}
