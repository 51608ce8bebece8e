//! Honest features: measured quantities of the customer, never identifiers.
//!
//! Names, addresses and company names identify a customer; encoding them as numbers only lets a
//! model memorise the training rows, and breaks on every new customer. They stay out.

use std::fmt;

use chrono::NaiveDateTime;
use serde::de::{self, Deserializer, EnumAccess, VariantAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::schema::{Customer, Field};

/// A model input, derived from a validated customer. Named like the column it comes from
/// (`Feature::name`), in model files, predictions and explanations alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    Age,
    TotalPurchase,
    AccountManager,
    Years,
    NumSites,
    /// Years from the onboard date to the as-of time: how long the account has been with us.
    /// A live record is measured at its scoring time; a training row at the training data's
    /// as-of date (`ChurnModel::reference_date`). Derived, so `churn train` keeps it only when
    /// its ablation shows it helps.
    TenureYears,
}

impl Feature {
    /// Every feature, in the order `churn train` uses them by default: the five numeric columns
    /// of the schema, used as they are, then tenure.
    pub const ALL: [Feature; 6] = [
        Feature::Age,
        Feature::TotalPurchase,
        Feature::AccountManager,
        Feature::Years,
        Feature::NumSites,
        Feature::TenureYears,
    ];

    /// The column a numeric feature is, as it is; `None` for a derived feature.
    pub const fn column(self) -> Option<Field> {
        match self {
            Feature::Age => Some(Field::Age),
            Feature::TotalPurchase => Some(Field::TotalPurchase),
            Feature::AccountManager => Some(Field::AccountManager),
            Feature::Years => Some(Field::Years),
            Feature::NumSites => Some(Field::NumSites),
            Feature::TenureYears => None,
        }
    }

    /// Its column's name, or "Tenure_Years": the name in model files, predictions and messages.
    pub const fn name(self) -> &'static str {
        match self.column() {
            Some(field) => field.column(),
            None => "Tenure_Years",
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
        Feature::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The feature's raw value for one customer, as of `as_of` (what tenure is measured to).
    pub fn value(self, customer: &Customer, as_of: NaiveDateTime) -> f64 {
        match self {
            Feature::Age => customer.age,
            Feature::TotalPurchase => customer.total_purchase,
            Feature::AccountManager => f64::from(u8::from(customer.account_manager)),
            Feature::Years => customer.years,
            Feature::NumSites => f64::from(customer.num_sites),
            Feature::TenureYears => tenure_years(customer.onboard_date, as_of),
        }
    }
}

/// Every feature's name, for serde's "expected one of" message.
static NAMES: [&str; Feature::ALL.len()] = {
    let mut names = [""; Feature::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Feature::ALL[i].name();
        i += 1;
    }
    names
};

/// By hand rather than derived, because serde's `rename` takes only literals and the names are
/// the columns' (`Feature::name`). The same calls the derived code makes: a unit variant by name,
/// so the JSON, and the errors for an unknown name, are as they were.
impl Serialize for Feature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit_variant("Feature", *self as u32, self.name())
    }
}

impl<'de> Deserialize<'de> for Feature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name(Feature);
        impl<'de> Deserialize<'de> for Name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_identifier(NameVisitor)
            }
        }
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("variant identifier")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Name, E> {
                let feature = Feature::ALL.into_iter().find(|f| f.name() == name);
                feature
                    .map(Name)
                    .ok_or_else(|| E::unknown_variant(name, &NAMES))
            }
        }
        struct FeatureVisitor;
        impl<'de> Visitor<'de> for FeatureVisitor {
            type Value = Feature;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("enum Feature")
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Feature, A::Error> {
                let (Name(feature), variant) = data.variant()?;
                variant.unit_variant()?;
                Ok(feature)
            }
        }
        deserializer.deserialize_enum("Feature", &NAMES, FeatureVisitor)
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
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    }

    #[test]
    fn tenure_counts_years_from_onboarding_to_the_reference_date() {
        let t = tenure_years(at(2010, 1, 1), at(2016, 1, 1));
        assert!((t - 6.0).abs() < 0.01, "{t}");
        assert_eq!(tenure_years(at(2017, 1, 1), at(2016, 1, 1)), 0.0);
    }

    #[test]
    fn feature_names_round_trip() {
        for f in Feature::ALL {
            assert_eq!(Feature::from_name(f.name()), Some(f));
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.name()));
            assert_eq!(serde_json::from_str::<Feature>(&json).unwrap(), f);
        }
        let unknown = serde_json::from_str::<Feature>("\"Onboard_date\"")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with(
                "unknown variant `Onboard_date`, expected one of `Age`, `Total_Purchase`"
            ),
            "{unknown}"
        );
    }
}
