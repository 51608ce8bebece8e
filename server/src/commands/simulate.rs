//! `churn simulate-promotion`: the proof that the duel promotes a truly better challenger and
//! leaves an equally good one alone, on seeded synthetic streams (model's pure code; no Kafka).

use anyhow::{Context, Result};
use model::duel::simulation::{self, Scenario, SimulationOptions};
use model::duel::DuelConfig;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Seeded runs per scenario (better, equal, worse).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Seed of the whole simulation: the same seed prints the same numbers.
    #[arg(long, default_value_t = 15)]
    seed: u64,
    /// Most labelled records per run; a run without a verdict by then counts as undecided.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u32).range(1..))]
    records: u32,
    /// How much better the challenger's AUC is in the "better" case (and worse in "worse").
    #[arg(long, default_value_t = 0.03)]
    delta_auc: f64,
    /// Labelled records per analytics window; the duel is asked for a verdict after each.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
    /// Chance of a wrong verdict, both directions together, under continuous monitoring.
    #[arg(long, default_value_t = DuelConfig::default().alpha, value_parser = alpha)]
    alpha: f64,
    /// No verdict before this many labelled records.
    #[arg(long, default_value_t = DuelConfig::default().min_records)]
    min_records: u64,
}

fn alpha(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(a) if a > 0.0 && a <= 0.5 => Ok(a),
        _ => Err(format!(
            "must be a number above 0 and at most 0.5 (e.g. 0.05), got {text}"
        )),
    }
}

pub fn run(args: &SimulateArgs) -> Result<()> {
    let options = SimulationOptions {
        runs: args.runs as usize,
        seed: args.seed,
        records: args.records as usize,
        window: args.window as usize,
        delta_auc: args.delta_auc,
        duel: DuelConfig {
            alpha: args.alpha,
            min_records: args.min_records,
            ..DuelConfig::default()
        },
    };
    eprintln!("designing streams for an AUC gap of {} ...", args.delta_auc);
    let design = simulation::design(args.delta_auc, args.seed).context("designing the streams")?;
    let test = model::duel::SequentialTest::EmpiricalBernsteinConfidenceSequence;
    println!(
        "{} runs per scenario, at most {} records each, verdict checked every {} records",
        options.runs, options.records, options.window
    );
    println!(
        "test: {}; alpha {}; no verdict before {} records ({} churners and {} stayers)",
        test.describe(),
        options.duel.alpha,
        options.duel.min_records,
        options.duel.min_per_class,
        options.duel.min_per_class,
    );
    println!();
    println!(
        "{:<8} {:>8} {:>10} {:>10} {:>9} {:>11} {:>9} {:>9} {:>10} {:>14}",
        "scenario",
        "churn",
        "AUC champ",
        "AUC chall",
        "AUC diff",
        "Brier gain",
        "promoted",
        "kept",
        "undecided",
        "median records"
    );
    for scenario in Scenario::ALL {
        let truth = simulation::truth(&design, scenario, args.seed);
        let step = (options.runs / 10).max(1);
        let outcome = simulation::run(&design, scenario, &options, |done| {
            if done % step == 0 || done == options.runs {
                eprintln!("{}: {done}/{} runs", scenario.name(), options.runs);
            }
        })?;
        let median = outcome
            .median_records()
            .map_or_else(|| "-".to_string(), |m| m.to_string());
        println!(
            "{:<8} {:>7.1}% {:>10.4} {:>10.4} {:>+9.4} {:>+11.5} {:>8.1}% {:>8.1}% {:>9.1}% {:>14}",
            scenario.name(),
            truth.churn_rate * 100.0,
            truth.champion_auc,
            truth.challenger_auc,
            truth.challenger_auc - truth.champion_auc,
            truth.brier_reduction,
            outcome.promoted_rate() * 100.0,
            outcome.kept_rate() * 100.0,
            outcome.undecided_rate() * 100.0,
            median,
        );
    }
    println!();
    println!(
        "promoted: the challenger won (wanted >= 95% when better, <= 5% when equal); kept: the \
         champion won; median records: to a verdict, among runs that reached one. True AUCs and \
         the Brier gain measured on 200,000 fresh records."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::alpha;

    #[test]
    fn alpha_must_be_a_small_probability() {
        assert_eq!(alpha("0.05"), Ok(0.05));
        assert_eq!(alpha("0.5"), Ok(0.5));
        for bad in ["0", "-0.05", "0.51", "1", "NaN", "inf", "five"] {
            let e = alpha(bad).unwrap_err();
            assert!(e.contains("e.g. 0.05") && e.contains(bad), "{e}");
        }
    }
}
