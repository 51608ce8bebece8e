//! Honest features: measured quantities of the customer, never identifiers.
//!
//! Names, addresses and company names identify a customer; encoding them as numbers only lets a
//! model memorise the training rows, and breaks on every new customer. They stay out.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::schema::Customer;

/// A model input, derived from a validated customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Feature {
    #[serde(rename = "Age")]
    Age,
    #[serde(rename = "Total_Purchase")]
    TotalPurchase,
    #[serde(rename = "Account_Manager")]
    AccountManager,
    #[serde(rename = "Years")]
    Years,
    #[serde(rename = "Num_Sites")]
    NumSites,
    /// Years from the onboard date to the model's reference date: how long the account has
    /// been with us, measured against a fixed date so that scoring is reproducible.
    #[serde(rename = "Tenure_Years")]
    TenureYears,
}

impl Feature {
    /// The five numeric columns of the schema, used as they are.
    pub const NUMERIC: [Feature; 5] = [
        Feature::Age,
        Feature::TotalPurchase,
        Feature::AccountManager,
        Feature::Years,
        Feature::NumSites,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Age => "Age",
            Feature::TotalPurchase => "Total_Purchase",
            Feature::AccountManager => "Account_Manager",
            Feature::Years => "Years",
            Feature::NumSites => "Num_Sites",
            Feature::TenureYears => "Tenure_Years",
        }
    }

    /// Words for explanations shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Feature::Age => "age",
            Feature::TotalPurchase => "total purchase",
            Feature::AccountManager => "account manager",
            Feature::Years => "years as a customer",
            Feature::NumSites => "number of sites",
            Feature::TenureYears => "tenure since onboarding",
        }
    }

    pub fn from_name(name: &str) -> Option<Feature> {
        [Feature::TenureYears]
            .into_iter()
            .chain(Feature::NUMERIC)
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The feature's raw value for one customer.
    pub fn value(self, customer: &Customer, reference_date: NaiveDateTime) -> f64 {
        match self {
            Feature::Age => customer.age,
            Feature::TotalPurchase => customer.total_purchase,
            Feature::AccountManager => f64::from(u8::from(customer.account_manager)),
            Feature::Years => customer.years,
            Feature::NumSites => f64::from(customer.num_sites),
            Feature::TenureYears => tenure_years(customer.onboard_date, reference_date),
        }
    }
}

const DAYS_PER_YEAR: f64 = 365.2425;

/// Years between onboarding and the reference date; an onboard date after the reference date
/// counts as a brand-new customer (0), not as negative tenure.
pub fn tenure_years(onboard: NaiveDateTime, reference: NaiveDateTime) -> f64 {
    let seconds = (reference - onboard).num_seconds().max(0) as f64;
    seconds / 86_400.0 / DAYS_PER_YEAR
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(0, 0, 0).unwrap()
    }

    #[test]
    fn tenure_counts_years_from_onboarding_to_the_reference_date() {
        let t = tenure_years(at(2010, 1, 1), at(2016, 1, 1));
        assert!((t - 6.0).abs() < 0.01, "{t}");
        assert_eq!(tenure_years(at(2017, 1, 1), at(2016, 1, 1)), 0.0);
    }

    #[test]
    fn feature_names_round_trip() {
        for f in Feature::NUMERIC.into_iter().chain([Feature::TenureYears]) {
            assert_eq!(Feature::from_name(f.name()), Some(f));
        }
    }
}
