//! Property tests of the record parser and validator: whatever arrives, they answer with a
//! customer or with reasons, never a panic; and every valid customer survives the wire form.
//! The scorer's whole per-record path, driven by records that get past parsing, is tested in
//! `whole_path`.

use chrono::NaiveDate;
use model::validate::{
    AGE_RANGE, NUM_SITES_MAX, ONBOARD_YEAR_RANGE, TEXT_MAX_CHARS, TOTAL_PURCHASE_MAX, YEARS_MAX,
};
use model::{validate, validate_field, Customer, Field, RawCustomer, Scalar};
use proptest::prelude::*;

use crate::support::close;

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<bool>().prop_map(Scalar::Bool),
        any::<f64>().prop_map(Scalar::Number),
        ".{0,40}".prop_map(Scalar::Text),
        prop::sample::select(vec![
            "NaN",
            "inf",
            "-inf",
            "1e999",
            "-0",
            " 42 ",
            "4,2",
            "2013-02-30 10:00:00",
            ""
        ])
        .prop_map(|s| Scalar::Text(s.to_owned())),
    ]
}

fn raw() -> impl Strategy<Value = RawCustomer> {
    prop::collection::vec(prop::option::of(scalar()), 10).prop_map(|values| {
        let mut raw = RawCustomer::default();
        for (field, value) in Field::ALL.into_iter().zip(values) {
            raw.set(field, value);
        }
        raw
    })
}

/// Text as validation leaves it: trimmed, no control characters, at most `max` characters.
/// Any other Unicode goes in, format characters (zero-width, bidi overrides) included.
fn clean_text(min: usize, max: usize) -> impl Strategy<Value = String> {
    let pattern = format!("[^\\p{{Cc}}]{{{min},{max}}}");
    proptest::string::string_regex(&pattern)
        .unwrap()
        .prop_filter_map("trimmed to the wanted length", move |text| {
            let text = text.trim().to_owned();
            (text.chars().count() >= min).then_some(text)
        })
}

/// A number in `[low, high]`: the limits themselves, cents (what a CSV carries) or any float.
fn number_in(low: f64, high: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(low),
        Just(high),
        ((low * 100.0) as i64..=(high * 100.0) as i64).prop_map(|cents| cents as f64 / 100.0),
        low..=high,
    ]
}

/// Any customer validation accepts, built from the documented limits.
fn valid_customer() -> impl Strategy<Value = Customer> {
    let (first_year, last_year) = ONBOARD_YEAR_RANGE;
    let date = (
        first_year..=last_year,
        1u32..=12,
        1u32..=31,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_filter_map("a real calendar day", |(y, m, d, h, min, s)| {
            NaiveDate::from_ymd_opt(y, m, d)?.and_hms_opt(h, min, s)
        });
    (
        clean_text(1, TEXT_MAX_CHARS),
        number_in(AGE_RANGE.0, AGE_RANGE.1),
        number_in(0.0, TOTAL_PURCHASE_MAX),
        any::<bool>(),
        number_in(0.0, YEARS_MAX),
        prop_oneof![Just(0), Just(NUM_SITES_MAX), 0..=NUM_SITES_MAX],
        date,
        (clean_text(0, TEXT_MAX_CHARS), clean_text(0, TEXT_MAX_CHARS)),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(
                name,
                age,
                total_purchase,
                account_manager,
                years,
                num_sites,
                onboard_date,
                (location, company),
                churn,
            )| {
                Customer {
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
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_json_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(raw) = serde_json::from_slice::<RawCustomer>(&bytes) {
            let _ = validate(&raw);
        }
    }

    #[test]
    fn any_record_validates_or_names_each_bad_field(raw in raw()) {
        match validate(&raw) {
            Ok(customer) => {
                prop_assert!(customer.age.is_finite() && customer.total_purchase >= 0.0);
                prop_assert_eq!(validate(&customer.to_raw()).unwrap(), customer);
            }
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(!e.message.is_empty());
                    prop_assert!(validate_field(e.field, raw.get(e.field)).is_err());
                }
            }
        }
    }

    #[test]
    fn every_field_rule_is_total(field in prop::sample::select(Field::ALL.to_vec()), value in prop::option::of(scalar())) {
        let _ = validate_field(field, value.as_ref());
    }

    // The two above reach a valid customer only by luck (random records are nearly always
    // rejected); this one starts from valid customers, so the success branch runs every time.
    #[test]
    fn every_valid_customer_round_trips(customer in valid_customer()) {
        prop_assert_eq!(validate(&customer.to_raw()), Ok(customer.clone()));

        // The wire: the producer's JSON, parsed as the scorer parses it.
        let json = serde_json::to_vec(&customer.to_raw()).unwrap();
        let parsed: RawCustomer = serde_json::from_slice(&json).unwrap();
        let back = validate(&parsed).unwrap();
        prop_assert!(close(back.age, customer.age) && close(back.total_purchase, customer.total_purchase)
            && close(back.years, customer.years), "{back:?} != {customer:?}");
        prop_assert_eq!(Customer { age: customer.age, total_purchase: customer.total_purchase, years: customer.years, ..back },
                        customer.clone());

        // CSV cells, as the trainer and batch scorer read them.
        let cells: Vec<(Field, String)> = Field::ALL.into_iter().map(|f| (f, customer.cell(f))).collect();
        let from_csv = RawCustomer::from_text_cells(cells.iter().map(|(f, text)| (*f, text.as_str())));
        prop_assert_eq!(validate(&from_csv), Ok(customer));
    }

    // Values with at most two decimals (what the CSV and the original producer carry) and
    // integers are parsed exactly: the wire changes nothing.
    #[test]
    fn cents_cross_the_wire_exactly(cents in 0..=(TOTAL_PURCHASE_MAX * 100.0) as i64) {
        let amount = cents as f64 / 100.0;
        let json = serde_json::to_string(&Scalar::Number(amount)).unwrap();
        prop_assert_eq!(serde_json::from_str::<Scalar>(&json).unwrap(), Scalar::Number(amount));
    }
}
