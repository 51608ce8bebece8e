//! The customer record as it travels: CSV header names as keys, values as loose scalars.
//!
//! Real producers disagree on types (the original Python producer sends numbers, a CSV gives
//! strings, a browser form gives strings), so a raw record accepts any scalar per field and
//! validation turns it into a typed [`Customer`] or a list of field errors.

use std::fmt;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

/// The schema, written once: each line is a column's `Field` variant, its name in CSV headers and
/// JSON keys, and the fields of `RawCustomer` and `Customer` that hold it (with the typed field's
/// serde attributes). Serde's `rename` takes only literals, so the names reach the derived serde
/// code of all three types through this macro; everything else asks `Field::column`.
macro_rules! schema {
    ($(
        $variant:ident = $column:literal, raw $raw:ident, customer $field:ident: $type:ty $(, serde($($attr:tt)*))?;
    )*) => {
        /// Every column of the schema, in the original CSV's order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Field {
            $(#[serde(rename = $column)] $variant,)*
        }

        impl Field {
            pub const ALL: [Field; 10] = [$(Field::$variant),*];

            /// The column name used in CSV headers and JSON keys.
            pub const fn column(self) -> &'static str {
                match self {
                    $(Field::$variant => $column,)*
                }
            }
        }

        /// A customer record as received: the original producer's JSON object, one key per CSV column.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct RawCustomer {
            $(
                #[serde(rename = $column, default, skip_serializing_if = "Option::is_none")]
                pub $raw: Option<Scalar>,
            )*
        }

        impl RawCustomer {
            fn slot(&self, field: Field) -> &Option<Scalar> {
                match field {
                    $(Field::$variant => &self.$raw,)*
                }
            }

            fn slot_mut(&mut self, field: Field) -> &mut Option<Scalar> {
                match field {
                    $(Field::$variant => &mut self.$raw,)*
                }
            }
        }

        /// A validated customer: every feature is present, typed and within its documented range.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct Customer {
            $(
                #[serde(rename = $column $(, $($attr)*)?)]
                pub $field: $type,
            )*
        }
    };
}

schema! {
    Names = "Names", raw names, customer name: String;
    Age = "Age", raw age, customer age: f64;
    TotalPurchase = "Total_Purchase", raw total_purchase, customer total_purchase: f64;
    AccountManager = "Account_Manager", raw account_manager, customer account_manager: bool;
    Years = "Years", raw years, customer years: f64;
    NumSites = "Num_Sites", raw num_sites, customer num_sites: u32;
    OnboardDate = "Onboard_date", raw onboard_date, customer onboard_date: NaiveDateTime, serde(with = "date_format");
    Location = "Location", raw location, customer location: String;
    Company = "Company", raw company, customer company: String;
    Churn = "Churn", raw churn, customer churn: Option<bool>, serde(default, skip_serializing_if = "Option::is_none");
}

impl Field {
    /// Finds a field by CSV header, forgiving case, spaces and a stray BOM.
    pub fn from_column(name: &str) -> Option<Field> {
        let wanted = normalize_header(name);
        Field::ALL
            .into_iter()
            .find(|field| normalize_header(field.column()) == wanted)
    }
}

fn normalize_header(name: &str) -> String {
    name.trim_start_matches('\u{feff}')
        .trim()
        .chars()
        .filter(|c| !matches!(c, '_' | ' ' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.column())
    }
}

/// One field's value before validation: whatever scalar the producer chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// By hand rather than `#[serde(untagged)]`: untagged buffers every value and builds an error
/// for each variant it rejects, which made parsing the scorer's hottest cost.
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl serde::de::Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, a string or a boolean")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Text(v))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl From<&str> for Scalar {
    fn from(text: &str) -> Self {
        Scalar::Text(text.to_owned())
    }
}

impl From<f64> for Scalar {
    fn from(number: f64) -> Self {
        Scalar::Number(number)
    }
}

impl RawCustomer {
    pub fn get(&self, field: Field) -> Option<&Scalar> {
        self.slot(field).as_ref()
    }

    pub fn set(&mut self, field: Field, value: Option<Scalar>) {
        *self.slot_mut(field) = value;
    }

    /// Builds a raw record from CSV cells; empty cells count as missing.
    pub fn from_text_cells<'a>(cells: impl IntoIterator<Item = (Field, &'a str)>) -> Self {
        let mut raw = RawCustomer::default();
        for (field, text) in cells {
            let text = text.trim();
            if !text.is_empty() {
                raw.set(field, Some(Scalar::from(text)));
            }
        }
        raw
    }
}

impl Customer {
    /// The record in the loose wire form, exactly as the original producer would send it.
    pub fn to_raw(&self) -> RawCustomer {
        RawCustomer {
            names: Some(Scalar::Text(self.name.clone())),
            age: Some(Scalar::Number(self.age)),
            total_purchase: Some(Scalar::Number(self.total_purchase)),
            account_manager: Some(Scalar::Number(f64::from(u8::from(self.account_manager)))),
            years: Some(Scalar::Number(self.years)),
            num_sites: Some(Scalar::Number(f64::from(self.num_sites))),
            onboard_date: Some(Scalar::Text(format_onboard_date(&self.onboard_date))),
            location: Some(Scalar::Text(self.location.clone())),
            company: Some(Scalar::Text(self.company.clone())),
            churn: self.churn.map(|c| Scalar::Number(f64::from(u8::from(c)))),
        }
    }

    /// The value of one column as CSV text.
    pub fn cell(&self, field: Field) -> String {
        match field {
            Field::Names => self.name.clone(),
            Field::Age => self.age.to_string(),
            Field::TotalPurchase => self.total_purchase.to_string(),
            Field::AccountManager => u8::from(self.account_manager).to_string(),
            Field::Years => self.years.to_string(),
            Field::NumSites => self.num_sites.to_string(),
            Field::OnboardDate => format_onboard_date(&self.onboard_date),
            Field::Location => self.location.clone(),
            Field::Company => self.company.clone(),
            Field::Churn => self
                .churn
                .map(|c| u8::from(c).to_string())
                .unwrap_or_default(),
        }
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS`, also with a `T` separator and without seconds (the browser's
/// datetime-local input). Hand-written rather than chrono's format strings: it runs for every
/// record in the scorer and keeps chrono's strftime machinery out of the browser bundle.
pub fn parse_onboard_date(text: &str) -> Option<NaiveDateTime> {
    fn number(part: &str, max_digits: usize) -> Option<u32> {
        let digits =
            (1..=max_digits).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| part.parse().ok()).flatten()
    }
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut ymd = date.split('-');
    let (year, month, day) = (ymd.next()?, ymd.next()?, ymd.next()?);
    let mut hms = time.split(':');
    let (hour, minute, second) = (hms.next()?, hms.next()?, hms.next().unwrap_or("0"));
    if ymd.next().is_some() || hms.next().is_some() || year.len() != 4 {
        return None;
    }
    chrono::NaiveDate::from_ymd_opt(number(year, 4)? as i32, number(month, 2)?, number(day, 2)?)?
        .and_hms_opt(number(hour, 2)?, number(minute, 2)?, number(second, 2)?)
}

/// Formats as `YYYY-MM-DD HH:MM:SS`, the schema's form.
pub fn format_onboard_date(date: &NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        date.year(),
        date.month(),
        date.day(),
        date.hour(),
        date.minute(),
        date.second()
    )
}

pub(crate) mod date_format {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(date: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_onboard_date(date))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_onboard_date(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a date as YYYY-MM-DD HH:MM:SS, got {text:?}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_forgivingly() {
        assert_eq!(Field::from_column("\u{feff}Names"), Some(Field::Names));
        assert_eq!(
            Field::from_column(" total purchase "),
            Some(Field::TotalPurchase)
        );
        assert_eq!(Field::from_column("onboard_date"), Some(Field::OnboardDate));
        assert_eq!(Field::from_column("Unnamed: 10"), None);
    }

    #[test]
    fn the_original_producers_json_parses() {
        let json = r#"{"Names":"Cameron Williams","Age":42.0,"Total_Purchase":11066.8,
            "Account_Manager":0,"Years":7.22,"Num_Sites":8.0,"Onboard_date":"2013-08-30 07:00:40",
            "Location":"10265 Elizabeth Mission Barkerburgh, AK 89518","Company":"Harvey LLC","Churn":1}"#;
        let raw: RawCustomer = serde_json::from_str(json).unwrap();
        assert_eq!(raw.age, Some(Scalar::Number(42.0)));
        assert_eq!(raw.names, Some(Scalar::Text("Cameron Williams".into())));
    }

    #[test]
    fn scalars_of_every_json_kind_parse_and_containers_are_refused() {
        let raw: RawCustomer = serde_json::from_str(
            r#"{"Age":42,"Years":-1.5,"Names":"x","Churn":true,"Company":null}"#,
        )
        .unwrap();
        assert_eq!(raw.age, Some(Scalar::Number(42.0)));
        assert_eq!(raw.years, Some(Scalar::Number(-1.5)));
        assert_eq!(raw.churn, Some(Scalar::Bool(true)));
        assert_eq!(raw.company, None);
        let error = serde_json::from_str::<RawCustomer>(r#"{"Age":[1]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("expected a number, a string or a boolean"),
            "{error}"
        );
        assert!(serde_json::from_str::<RawCustomer>(r#"{"Age":{"a":1}}"#).is_err());
    }

    #[test]
    fn onboard_dates_parse_in_the_schema_and_browser_forms_only() {
        let at = |y, m, d, h, min, s| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, min, s)
                .unwrap()
        };
        assert_eq!(
            parse_onboard_date("2013-08-30 07:00:40"),
            Some(at(2013, 8, 30, 7, 0, 40))
        );
        assert_eq!(
            parse_onboard_date("2013-08-30T07:00:40"),
            Some(at(2013, 8, 30, 7, 0, 40))
        );
        assert_eq!(
            parse_onboard_date("2013-08-30T07:00"),
            Some(at(2013, 8, 30, 7, 0, 0))
        );
        assert_eq!(
            parse_onboard_date("2013-8-3 7:00:40"),
            Some(at(2013, 8, 3, 7, 0, 40))
        );
        for bad in [
            "",
            "2013-08-30",
            "2013-02-30 00:00:00",
            "13-08-30 07:00:40",
            "2013-08-30 25:00:00",
            "2013-08-30 07:00:40:00",
            "2013-08-30 07:00:4x",
            "+013-08-30 07:00:40",
            "2013-08-30 07:-0:40",
        ] {
            assert_eq!(parse_onboard_date(bad), None, "{bad:?}");
        }
        let date = at(2006, 1, 2, 3, 4, 5);
        assert_eq!(format_onboard_date(&date), "2006-01-02 03:04:05");
        assert_eq!(parse_onboard_date(&format_onboard_date(&date)), Some(date));
    }
}
