//! `churn generate`: a realistic synthetic customer CSV.

use std::path::PathBuf;

use anyhow::{Context, Result};
use model::synth::{generate_csv, GenerateOptions};
use server::args;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 900)]
    rows: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of rows made messy on purpose (missing values, stray spaces, trailing columns, CRLF).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = args::share)]
    messy: f64,
    /// Output CSV file.
    #[arg(short, long, default_value = "data/customers.csv")]
    output: PathBuf,
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let text = generate_csv(&GenerateOptions {
        rows: args.rows,
        seed: args.seed,
        messy_fraction: args.messy,
    });
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.output, text)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {} customers to {}", args.rows, args.output.display());
    Ok(())
}
