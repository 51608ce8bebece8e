//! The referee's flags, shared by `churn analyze` and `churn serve`, which both run it.

use std::time::Duration;

use model::duel::DuelConfig;
use server::referee::RefereeOptions;

/// The live duel between the champion and a published challenger.
#[derive(clap::Args, Debug, Clone)]
pub struct RefereeArgs {
    /// Act on the duel's verdict: promote a challenger found better (the champion it replaces
    /// becomes the challenger, watched for a rollback), withdraw one found worse, and roll a
    /// promotion back when the replaced model turns out better. Without it the referee only
    /// publishes the duel's figures and verdict.
    #[arg(long)]
    pub auto_promote: bool,
    /// The duel's chance of a wrong verdict, both directions together, however long it runs
    /// and however often it is looked at (between 0 and 0.5).
    #[arg(long, default_value_t = DuelConfig::default().alpha, allow_negative_numbers = true, value_parser = alpha)]
    pub duel_alpha: f64,
    /// No verdict before this many labelled records scored by both models (nor before 50
    /// churners and 50 stayers among them).
    #[arg(long, default_value_t = DuelConfig::default().min_records, value_parser = clap::value_parser!(u64).range(1..))]
    pub duel_min_records: u64,
}

fn alpha(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(a) if a > 0.0 && a <= 0.5 => Ok(a),
        _ => Err(format!(
            "{:?} is not a chance between 0 and 0.5 (e.g. 0.05)",
            model::record::truncate_utf8(text, 40)
        )),
    }
}

impl RefereeArgs {
    pub fn options(&self) -> RefereeOptions {
        RefereeOptions {
            duel: DuelConfig {
                alpha: self.duel_alpha,
                min_records: self.duel_min_records,
                ..DuelConfig::default()
            },
            auto_promote: self.auto_promote,
            publish_every: Duration::from_secs(3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_is_a_chance_between_0_and_a_half() {
        for good in ["0.05", "0.5", " 0.001 ", "1e-3"] {
            assert!(alpha(good).is_ok(), "{good}");
        }
        for bad in ["0", "-0.05", "0.51", "1", "NaN", "inf", "", "five percent"] {
            assert!(alpha(bad).is_err(), "{bad}");
        }
    }
}
