//! Scoring with a model file's model: standardize, weigh, squash, explain.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::features::Feature;
use crate::model_file::ChurnModel;
use crate::schema::Customer;

/// One feature's share of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: Feature,
    /// The customer's raw value of the feature.
    pub value: f64,
    /// Its contribution to the log-odds of churn: coefficient × standardized value.
    pub log_odds: f64,
}

impl Contribution {
    /// "Num_Sites = 14 raises churn risk". Built by hand: formatting floats with a precision
    /// (`{:.2}`) cost more than the scoring itself, and tables describe many rows at once.
    pub fn describe(&self) -> String {
        let mut text = String::with_capacity(48);
        text.push_str(self.feature.name());
        text.push_str(" = ");
        match self.feature {
            Feature::AccountManager => text.push_str(if self.value >= 0.5 { "yes" } else { "no" }),
            _ => push_short_decimal(&mut text, self.value),
        }
        text.push_str(if self.log_odds >= 0.0 {
            " raises churn risk"
        } else {
            " lowers churn risk"
        });
        text
    }
}

/// Several contributions in words, for one table cell: "Num_Sites = 14 raises churn risk; ...".
pub fn describe_all(contributions: &[Contribution]) -> String {
    contributions
        .iter()
        .map(Contribution::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Appends `value` rounded to two decimals, without trailing zeros: "9000.5", "42", "0.33".
fn push_short_decimal(out: &mut String, value: f64) {
    let cents = (value * 100.0).round();
    // Whole cents are exact integers below 2^53; anything larger (or not finite) never passes
    // validation, but still gets written.
    if cents.is_nan() || cents.abs() >= 9e15 {
        use std::fmt::Write;
        let _ = write!(out, "{value}");
        return;
    }
    let cents = cents as i64;
    if cents < 0 {
        out.push('-');
    }
    let cents = cents.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(cents / 100));
    let fraction = (cents % 100) as u8;
    if fraction != 0 {
        out.push('.');
        out.push(char::from(b'0' + fraction / 10));
        if !fraction.is_multiple_of(10) {
            out.push(char::from(b'0' + fraction % 10));
        }
    }
}

/// The model's verdict on one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub probability: f64,
    pub churn: bool,
    pub log_odds: f64,
    /// Every feature's contribution, largest effect first.
    pub contributions: Vec<Contribution>,
    /// Features whose value lies outside the range the model was trained on, in the model's
    /// order: the model extrapolates there, and its probability deserves less trust.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extrapolated: Vec<Feature>,
}

pub fn sigmoid(z: f64) -> f64 {
    // Split by sign so neither branch overflows for large |z|.
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl ChurnModel {
    /// Scores a validated customer as of `as_of` (the record's scoring time: tenure is measured
    /// to it), with every feature's contribution and the features outside the training range.
    pub fn score(&self, customer: &Customer, as_of: NaiveDateTime) -> Score {
        let mut extrapolated = Vec::new();
        let mut contributions: Vec<Contribution> = self
            .features
            .iter()
            .map(|w| {
                let value = w.feature.value(customer, as_of);
                if w.extrapolates(value) {
                    extrapolated.push(w.feature);
                }
                Contribution {
                    feature: w.feature,
                    value,
                    log_odds: w.coefficient * (value - w.mean) / w.std_dev,
                }
            })
            .collect();
        let log_odds = self.intercept + contributions.iter().map(|c| c.log_odds).sum::<f64>();
        contributions.sort_by(|a, b| b.log_odds.abs().total_cmp(&a.log_odds.abs()));
        let probability = sigmoid(log_odds);
        Score {
            probability,
            churn: probability >= self.threshold,
            log_odds,
            contributions,
            extrapolated,
        }
    }

    /// Churn probability only, as of `as_of`: the hot path of batch scoring, no allocation.
    pub fn probability(&self, customer: &Customer, as_of: NaiveDateTime) -> f64 {
        let z = self.features.iter().fold(self.intercept, |z, w| {
            z + w.coefficient * (w.feature.value(customer, as_of) - w.mean) / w.std_dev
        });
        sigmoid(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_file::tests::tiny_model;
    use crate::schema::parse_onboard_date;

    fn customer(age: f64, sites: u32, manager: bool) -> Customer {
        Customer {
            name: "A".into(),
            age,
            total_purchase: 100.0,
            account_manager: manager,
            years: 5.0,
            num_sites: sites,
            onboard_date: parse_onboard_date("2010-01-01 00:00:00").unwrap(),
            location: String::new(),
            company: String::new(),
            churn: None,
        }
    }

    fn now() -> NaiveDateTime {
        parse_onboard_date("2026-01-01 00:00:00").unwrap()
    }

    #[test]
    fn scoring_matches_a_hand_computed_logistic_value() {
        // z = -1 + 0.5*(45-40)/5 + 1.5*(12-8)/2 - 0.2*(1-0.5)/0.5 = -1 + 0.5 + 3 - 0.2 = 2.3
        let score = tiny_model().score(&customer(45.0, 12, true), now());
        assert!((score.log_odds - 2.3).abs() < 1e-12, "{}", score.log_odds);
        let expected = 1.0 / (1.0 + (-2.3f64).exp());
        assert!((score.probability - expected).abs() < 1e-12);
        assert!((score.probability - 0.908877).abs() < 1e-6);
        assert!(score.churn);
        assert_eq!(
            tiny_model().probability(&customer(45.0, 12, true), now()),
            score.probability
        );
    }

    #[test]
    fn contributions_sum_to_the_log_odds_minus_the_intercept_and_come_largest_first() {
        let model = tiny_model();
        let score = model.score(&customer(31.0, 3, false), now());
        let sum: f64 = score.contributions.iter().map(|c| c.log_odds).sum();
        assert!((sum - (score.log_odds - model.intercept)).abs() < 1e-12);
        assert_eq!(score.contributions[0].feature, Feature::NumSites);
        assert_eq!(
            score.contributions[0].describe(),
            "Num_Sites = 3 lowers churn risk"
        );
    }

    #[test]
    fn values_outside_the_training_range_are_named_and_the_edges_are_inside() {
        let model = tiny_model(); // Age 25..=60, Num_Sites 3..=14, Account_Manager 0..=1
        assert!(model
            .score(&customer(45.0, 12, true), now())
            .extrapolated
            .is_empty());
        assert!(model
            .score(&customer(25.0, 14, false), now())
            .extrapolated
            .is_empty());
        assert!(model
            .score(&customer(60.0, 3, true), now())
            .extrapolated
            .is_empty());
        let young = model.score(&customer(24.9, 12, true), now());
        assert_eq!(young.extrapolated, vec![Feature::Age]);
        let both = model.score(&customer(61.0, 15, true), now());
        assert_eq!(both.extrapolated, vec![Feature::Age, Feature::NumSites]);
        assert_eq!(
            model
                .score(&customer(f64::NAN, 2, true), now())
                .extrapolated
                .len(),
            2
        );
    }

    #[test]
    fn tenure_grows_with_the_scoring_time_not_the_model_age() {
        let mut model = tiny_model();
        model.features.push(crate::model_file::FeatureWeight {
            feature: Feature::TenureYears,
            mean: 3.0,
            std_dev: 1.0,
            coefficient: -1.0,
            min: 0.0,
            max: 6.0,
        });
        let c = customer(45.0, 12, true); // onboarded 2010-01-01
        let at = |date: &str| parse_onboard_date(date).unwrap();
        let tenure = |s: &Score| {
            s.contributions
                .iter()
                .find(|x| x.feature == Feature::TenureYears)
                .unwrap()
                .value
        };
        let early = model.score(&c, at("2015-01-01 00:00:00"));
        let late = model.score(&c, at("2020-01-01 00:00:00"));
        assert!((tenure(&early) - 5.0).abs() < 0.01, "{}", tenure(&early));
        assert!((tenure(&late) - 10.0).abs() < 0.01, "{}", tenure(&late));
        assert!(late.probability < early.probability);
        assert!(early.extrapolated.is_empty());
        assert_eq!(late.extrapolated, vec![Feature::TenureYears]);
    }

    #[test]
    fn factor_values_are_written_with_at_most_two_decimals() {
        let text = |feature, value: f64| {
            Contribution {
                feature,
                value,
                log_odds: 1.0,
            }
            .describe()
        };
        assert_eq!(
            text(Feature::TotalPurchase, 9000.0),
            "Total_Purchase = 9000 raises churn risk"
        );
        assert_eq!(
            text(Feature::TotalPurchase, 9000.5),
            "Total_Purchase = 9000.5 raises churn risk"
        );
        assert_eq!(
            text(Feature::Years, 4.256),
            "Years = 4.26 raises churn risk"
        );
        assert_eq!(text(Feature::Years, 0.07), "Years = 0.07 raises churn risk");
        assert_eq!(text(Feature::Years, -1.5), "Years = -1.5 raises churn risk");
        assert_eq!(text(Feature::Age, 42.999), "Age = 43 raises churn risk");
        assert_eq!(
            text(Feature::AccountManager, 1.0),
            "Account_Manager = yes raises churn risk"
        );
        assert_eq!(text(Feature::Age, f64::NAN), "Age = NaN raises churn risk");
        assert_eq!(
            text(Feature::TotalPurchase, 1e300),
            format!("Total_Purchase = {} raises churn risk", 1e300)
        );
    }

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }
}
