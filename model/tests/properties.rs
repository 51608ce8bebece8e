//! Property tests of the record parser and validator: whatever arrives, they answer with a
//! customer or with reasons, never a panic; and every valid customer survives the wire form.

use model::{validate, validate_field, Field, RawCustomer, Scalar};
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<bool>().prop_map(Scalar::Bool),
        any::<f64>().prop_map(Scalar::Number),
        ".{0,40}".prop_map(Scalar::Text),
        prop::sample::select(vec!["NaN", "inf", "-inf", "1e999", "-0", " 42 ", "4,2", "2013-02-30 10:00:00", ""])
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
}
