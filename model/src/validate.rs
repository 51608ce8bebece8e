//! The one definition of what a valid customer record is.
//!
//! The scorer, the CSV reader, the trainer and the browser form all call these functions, so a
//! record the form accepts is a record the scorer scores, and every rejection names its field.

use std::fmt;

use chrono::{Datelike, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::schema::{parse_onboard_date, Customer, Field, RawCustomer, Scalar};

/// Documented bounds. Wide enough for any real customer base, tight enough to catch unit
/// mix-ups and garbage (a negative age, a purchase total in the trillions).
pub const AGE_RANGE: (f64, f64) = (16.0, 110.0);
pub const TOTAL_PURCHASE_MAX: f64 = 1.0e9;
pub const YEARS_MAX: f64 = 100.0;
pub const NUM_SITES_MAX: u32 = 100_000;
pub const ONBOARD_YEAR_RANGE: (i32, i32) = (1950, 2100);
pub const TEXT_MAX_CHARS: usize = 300;

/// Why one field was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: Field,
    pub message: String,
}

/// All the reasons a record was rejected, one per bad field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    pub fn for_field(&self, field: Field) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

/// A field's value after validation.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    Number(f64),
    Count(u32),
    Flag(bool),
    Date(NaiveDateTime),
    Absent,
}

/// Validates one field on its own: what the browser calls as the user types.
pub fn validate_field(field: Field, value: Option<&Scalar>) -> Result<FieldValue, String> {
    let value = match value {
        Some(Scalar::Text(text)) if text.trim().is_empty() => None,
        other => other,
    };
    match field {
        Field::Names => required_text(value, "a customer name").map(FieldValue::Text),
        Field::Location | Field::Company => optional_text(value).map(FieldValue::Text),
        Field::Age => number(value, "an age in years").and_then(|age| {
            if age < AGE_RANGE.0 || age > AGE_RANGE.1 {
                Err(format!(
                    "must be between {} and {} years, got {age}",
                    AGE_RANGE.0, AGE_RANGE.1
                ))
            } else {
                Ok(FieldValue::Number(age))
            }
        }),
        Field::TotalPurchase => number(value, "an amount").and_then(|amount| {
            if amount < 0.0 {
                Err(format!("cannot be negative, got {amount}"))
            } else if amount > TOTAL_PURCHASE_MAX {
                Err(format!(
                    "is implausibly large ({amount}); at most {TOTAL_PURCHASE_MAX}"
                ))
            } else {
                Ok(FieldValue::Number(amount))
            }
        }),
        Field::Years => number(value, "a number of years").and_then(|years| {
            if years < 0.0 {
                Err(format!("cannot be negative, got {years}"))
            } else if years > YEARS_MAX {
                Err(format!("must be at most {YEARS_MAX} years, got {years}"))
            } else {
                Ok(FieldValue::Number(years))
            }
        }),
        Field::NumSites => number(value, "a whole number of sites").and_then(|sites| {
            if sites < 0.0 {
                Err(format!("cannot be negative, got {sites}"))
            } else if sites.fract() != 0.0 {
                Err(format!("must be a whole number, got {sites}"))
            } else if sites > f64::from(NUM_SITES_MAX) {
                Err(format!("must be at most {NUM_SITES_MAX}, got {sites}"))
            } else {
                Ok(FieldValue::Count(sites as u32))
            }
        }),
        Field::AccountManager => flag(value).map(FieldValue::Flag),
        Field::Churn => match value {
            None => Ok(FieldValue::Absent),
            some => flag(some).map(FieldValue::Flag),
        },
        Field::OnboardDate => onboard_date(value).map(FieldValue::Date),
    }
}

/// Validates a whole record, collecting every field's error rather than stopping at the first.
pub fn validate(raw: &RawCustomer) -> Result<Customer, ValidationErrors> {
    let mut errors = Vec::new();
    let mut check = |field: Field| match validate_field(field, raw.get(field)) {
        Ok(value) => Some(value),
        Err(message) => {
            errors.push(FieldError { field, message });
            None
        }
    };
    let name = check(Field::Names);
    let age = check(Field::Age);
    let total_purchase = check(Field::TotalPurchase);
    let account_manager = check(Field::AccountManager);
    let years = check(Field::Years);
    let num_sites = check(Field::NumSites);
    let onboard_date = check(Field::OnboardDate);
    let location = check(Field::Location);
    let company = check(Field::Company);
    let churn = check(Field::Churn);
    if !errors.is_empty() {
        return Err(ValidationErrors(errors));
    }
    use FieldValue::*;
    match (
        name,
        age,
        total_purchase,
        account_manager,
        years,
        num_sites,
        onboard_date,
        location,
        company,
        churn,
    ) {
        (
            Some(Text(name)),
            Some(Number(age)),
            Some(Number(total_purchase)),
            Some(Flag(account_manager)),
            Some(Number(years)),
            Some(Count(num_sites)),
            Some(Date(onboard_date)),
            Some(Text(location)),
            Some(Text(company)),
            Some(churn),
        ) => Ok(Customer {
            name,
            age,
            total_purchase,
            account_manager,
            years,
            num_sites,
            onboard_date,
            location,
            company,
            churn: match churn {
                Flag(c) => Some(c),
                _ => None,
            },
        }),
        _ => unreachable!("validate_field returns the variant its field documents"),
    }
}

fn required_text(value: Option<&Scalar>, what: &str) -> Result<String, String> {
    match value {
        None => Err(format!("is missing: enter {what}")),
        Some(_) => optional_text(value),
    }
}

fn optional_text(value: Option<&Scalar>) -> Result<String, String> {
    let text = match value {
        None => return Ok(String::new()),
        Some(Scalar::Text(text)) => text.trim().to_owned(),
        Some(Scalar::Number(n)) => n.to_string(),
        Some(Scalar::Bool(_)) => return Err("must be text, got true/false".into()),
    };
    if text.chars().count() > TEXT_MAX_CHARS {
        return Err(format!("is too long: at most {TEXT_MAX_CHARS} characters"));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err("contains control characters".into());
    }
    Ok(text)
}

fn number(value: Option<&Scalar>, what: &str) -> Result<f64, String> {
    let number = match value {
        None => return Err(format!("is missing: enter {what}")),
        Some(Scalar::Number(n)) => *n,
        Some(Scalar::Text(text)) => text
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("must be a number, got {:?}", shorten(text)))?,
        Some(Scalar::Bool(_)) => return Err("must be a number, got true/false".into()),
    };
    if !number.is_finite() {
        return Err(format!("must be a finite number, got {number}"));
    }
    Ok(number)
}

fn flag(value: Option<&Scalar>) -> Result<bool, String> {
    const HINT: &str = "must be 0 or 1 (no/yes)";
    match value {
        None => Err(format!("is missing: {HINT}")),
        Some(Scalar::Bool(b)) => Ok(*b),
        Some(Scalar::Number(n)) if *n == 0.0 => Ok(false),
        Some(Scalar::Number(n)) if *n == 1.0 => Ok(true),
        Some(Scalar::Number(n)) => Err(format!("{HINT}, got {n}")),
        Some(Scalar::Text(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "0" | "0.0" | "no" | "false" | "n" => Ok(false),
            "1" | "1.0" | "yes" | "true" | "y" => Ok(true),
            _ => Err(format!("{HINT}, got {:?}", shorten(text))),
        },
    }
}

fn onboard_date(value: Option<&Scalar>) -> Result<NaiveDateTime, String> {
    let text = match value {
        None => return Err("is missing: enter a date as YYYY-MM-DD HH:MM:SS".into()),
        Some(Scalar::Text(text)) => text.trim(),
        Some(_) => return Err("must be a date as YYYY-MM-DD HH:MM:SS".into()),
    };
    // The browser's datetime-local input sends "YYYY-MM-DDTHH:MM" (seconds optional).
    let date = parse_onboard_date(text).ok_or_else(|| {
        format!(
            "must be a date as YYYY-MM-DD HH:MM:SS, got {:?}",
            shorten(text)
        )
    })?;
    let (first, last) = ONBOARD_YEAR_RANGE;
    if date.year() < first || date.year() > last {
        return Err(format!(
            "year must be between {first} and {last}, got {}",
            date.year()
        ));
    }
    Ok(date)
}

/// Keeps error messages readable when the bad value is a megabyte of garbage.
fn shorten(text: &str) -> String {
    const KEEP: usize = 40;
    if text.chars().count() <= KEEP {
        text.to_owned()
    } else {
        let head: String = text.chars().take(KEEP).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> RawCustomer {
        RawCustomer::from_text_cells([
            (Field::Names, "Cameron Williams"),
            (Field::Age, "42"),
            (Field::TotalPurchase, "11066.80"),
            (Field::AccountManager, "0"),
            (Field::Years, "7.22"),
            (Field::NumSites, "8"),
            (Field::OnboardDate, "2013-08-30 07:00:40"),
            (
                Field::Location,
                "10265 Elizabeth Mission Barkerburgh, AK 89518",
            ),
            (Field::Company, "Harvey LLC"),
            (Field::Churn, "1"),
        ])
    }

    fn rejection(field: Field, value: Option<Scalar>) -> String {
        let mut raw = good();
        raw.set(field, value);
        let errors = validate(&raw).expect_err("must be rejected");
        assert_eq!(errors.0.len(), 1, "{errors}");
        errors
            .for_field(field)
            .expect("error names the field")
            .to_owned()
    }

    #[test]
    fn a_good_record_validates() {
        let customer = validate(&good()).unwrap();
        assert_eq!(customer.num_sites, 8);
        assert_eq!(customer.churn, Some(true));
        assert_eq!(
            customer.location,
            "10265 Elizabeth Mission Barkerburgh, AK 89518"
        );
    }

    #[test]
    fn each_kind_of_bad_field_has_a_specific_message() {
        assert!(rejection(Field::Names, None).contains("missing"));
        assert!(rejection(Field::Age, Some("-3".into())).contains("between 16 and 110"));
        assert!(rejection(Field::Age, Some("forty".into())).contains("must be a number"));
        assert!(rejection(Field::Age, Some(Scalar::Bool(true))).contains("must be a number"));
        assert!(rejection(Field::Age, Some(f64::NAN.into())).contains("finite"));
        assert!(rejection(Field::Age, None).contains("missing"));
        assert!(rejection(Field::TotalPurchase, Some((-1.0).into())).contains("negative"));
        assert!(rejection(Field::TotalPurchase, Some(1e12.into())).contains("implausibly"));
        assert!(rejection(Field::AccountManager, Some("2".into())).contains("0 or 1"));
        assert!(rejection(Field::Years, Some((-0.5).into())).contains("negative"));
        assert!(rejection(Field::NumSites, Some(8.5.into())).contains("whole number"));
        assert!(rejection(Field::OnboardDate, Some("30/08/2013".into())).contains("YYYY-MM-DD"));
        assert!(rejection(Field::OnboardDate, Some("1900-01-01 00:00:00".into())).contains("year"));
        assert!(rejection(Field::Churn, Some("maybe".into())).contains("0 or 1"));
        assert!(
            rejection(Field::Company, Some("x".repeat(1000).as_str().into())).contains("too long")
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut raw = good();
        raw.set(Field::Age, Some("old".into()));
        raw.set(Field::NumSites, None);
        let errors = validate(&raw).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field).collect();
        assert_eq!(fields, vec![Field::Age, Field::NumSites]);
        assert_eq!(errors.to_string(), "Age: must be a number, got \"old\"; Num_Sites: is missing: enter a whole number of sites");
    }

    #[test]
    fn loose_types_from_other_producers_are_accepted() {
        let mut raw = good();
        raw.set(Field::AccountManager, Some(Scalar::Bool(true)));
        raw.set(Field::NumSites, Some(Scalar::Number(8.0)));
        raw.set(Field::OnboardDate, Some("2013-08-30T07:00".into()));
        raw.set(Field::Churn, None);
        let customer = validate(&raw).unwrap();
        assert!(customer.account_manager);
        assert_eq!(customer.churn, None);
    }

    #[test]
    fn a_customer_round_trips_through_the_wire_form() {
        let customer = validate(&good()).unwrap();
        assert_eq!(validate(&customer.to_raw()).unwrap(), customer);
    }
}
