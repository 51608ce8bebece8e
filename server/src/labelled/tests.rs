//! The join without Kafka: outcomes win, bad records and bad outcomes are skipped and counted,
//! memory stays within `max_records` and keeps the newest.

use model::synth::{generate_customers, GenerateOptions};
use model::{Customer, Field, Scalar};

use super::*;

fn customers(rows: usize, seed: u64) -> Vec<Customer> {
    generate_customers(&GenerateOptions {
        rows,
        seed,
        messy_fraction: 0.0,
    })
}

/// A customer as the input topic carries it, with its own `Churn` or none.
fn wire(customer: &Customer, own: Option<bool>) -> Vec<u8> {
    let mut raw = crate::replay::to_wire(&customer.to_raw());
    raw.set(
        Field::Churn,
        own.map(|c| Scalar::Number(f64::from(u8::from(c)))),
    );
    serde_json::to_vec(&raw).unwrap()
}

fn at(i: usize) -> Position {
    (1_000 + i as i64, 0, i as i64)
}

#[test]
fn outcomes_are_read_as_the_analytics_reads_them() {
    for (text, expected) in [
        (r#"{"Churn": 1}"#, Some(true)),
        (r#"{"Churn": 0}"#, Some(false)),
        (r#"{"Churn": "yes"}"#, Some(true)),
        (r#"{"Churn": "1"}"#, Some(true)),
        (r#"{"Churn": 2}"#, None),
        (r#"{"Churn": null}"#, None),
        (r#"{}"#, None),
        (r#"[1]"#, None),
        ("not json", None),
        ("", None),
    ] {
        assert_eq!(
            model::message::outcome_label(text.as_bytes()),
            expected,
            "{text}"
        );
    }
}

#[test]
fn an_outcome_wins_over_the_records_own_field_and_records_without_a_label_are_skipped() {
    let people = customers(4, 1);
    let mut outcomes = Outcomes::new(100);
    outcomes.add(at(0), Some(b"a"), Some(br#"{"Churn": 1}"#));
    outcomes.add(at(1), Some(b"b"), Some(br#"{"Churn": 0}"#));
    // A later outcome for the same record replaces the earlier one.
    outcomes.add(at(2), Some(b"b"), Some(br#"{"Churn": 1}"#));
    // Unusable: no key, an empty key, no value, no Churn, an id for no record (harmless).
    outcomes.add(at(3), None, Some(br#"{"Churn": 1}"#));
    outcomes.add(at(4), Some(b"  "), Some(br#"{"Churn": 1}"#));
    outcomes.add(at(5), Some(b"c"), None);
    outcomes.add(at(6), Some(b"c"), Some(b"{\"Churn\": \"maybe\"}"));
    outcomes.add(at(7), Some(b"nobody"), Some(br#"{"Churn": 0}"#));
    let mut joiner = outcomes.into_joiner(100);
    joiner.add(at(10), "a", Some(&wire(&people[0], Some(false))));
    joiner.add(at(11), "b", Some(&wire(&people[1], None)));
    joiner.add(at(12), "c", Some(&wire(&people[2], Some(true))));
    joiner.add(at(13), "d", Some(&wire(&people[3], None)));
    let (kept, counts) = joiner.finish();
    assert_eq!(
        kept.iter().map(|c| c.churn).collect::<Vec<_>>(),
        [Some(true), Some(true), Some(true)],
        "a: the outcome over its own 0; b: the later outcome; c: its own field; d: skipped"
    );
    assert_eq!(kept[0].name, people[0].name, "oldest first");
    assert_eq!(
        counts,
        JoinCounts {
            records: 4,
            unlabelled: 1,
            by_record: 1,
            by_outcome: 2,
            outcome_overrode_record: 1,
            outcomes: 8,
            outcomes_unusable: 4,
            ..Default::default()
        }
    );
}

#[test]
fn without_outcomes_only_the_records_own_field_labels() {
    let people = customers(2, 2);
    let mut joiner = Joiner::records_only(10);
    joiner.add(at(0), "a", Some(&wire(&people[0], Some(true))));
    joiner.add(at(1), "b", Some(&wire(&people[1], None)));
    let (kept, counts) = joiner.finish();
    assert_eq!(kept.len(), 1);
    assert_eq!((counts.by_record, counts.unlabelled), (1, 1));
}

#[test]
fn hostile_records_are_skipped_and_counted_as_the_scorer_would() {
    let good = wire(&customers(1, 3)[0], Some(true));
    let mut bad_age: serde_json::Value = serde_json::from_slice(&good).unwrap();
    bad_age["Age"] = serde_json::json!(-5);
    let mut huge: serde_json::Value = serde_json::from_slice(&good).unwrap();
    huge["Names"] = serde_json::json!("x".repeat(model::record::MAX_RECORD_BYTES));
    let mut bad_label: serde_json::Value = serde_json::from_slice(&good).unwrap();
    bad_label["Churn"] = serde_json::json!("perhaps");
    let hostile: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(vec![]),
        Some(b"not json".to_vec()),
        Some(vec![0xff, 0xfe, 0x00]),
        Some(b"[]".to_vec()),
        Some(b"{}".to_vec()),
        Some(serde_json::to_vec(&bad_age).unwrap()),
        Some(serde_json::to_vec(&huge).unwrap()),
        Some(serde_json::to_vec(&bad_label).unwrap()),
    ];
    let mut joiner = Joiner::records_only(10);
    for (i, payload) in hostile.iter().enumerate() {
        joiner.add(at(i), "x", payload.as_deref());
    }
    joiner.add(at(99), "y", Some(&good));
    let (kept, counts) = joiner.finish();
    assert_eq!(kept.len(), 1);
    assert_eq!(counts.invalid, hostile.len() as u64);
    assert_eq!(counts.records, hostile.len() as u64 + 1);
}

#[test]
fn at_most_max_records_are_kept_and_they_are_the_newest_whatever_the_arrival_order() {
    let people = customers(50, 4);
    let mut joiner = Joiner::records_only(10);
    // Two partitions interleaved, timestamps out of arrival order.
    let mut order: Vec<usize> = (0..50).collect();
    order.reverse();
    order.rotate_left(17);
    for &i in &order {
        let position = (i as i64 * 10, (i % 2) as i32, i as i64);
        joiner.add(
            position,
            &i.to_string(),
            Some(&wire(&people[i], Some(i % 3 == 0))),
        );
    }
    let (kept, counts) = joiner.finish();
    assert_eq!(kept.len(), 10);
    assert_eq!(counts.over_limit, 40);
    let names: Vec<&str> = kept.iter().map(|c| c.name.as_str()).collect();
    let newest: Vec<&str> = people[40..].iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, newest, "the newest ten, oldest first");

    // The outcomes too: at most max_records, the newest.
    let mut outcomes = Outcomes::new(3);
    for i in 0..10 {
        outcomes.add(
            at(i),
            Some(i.to_string().as_bytes()),
            Some(br#"{"Churn": 1}"#),
        );
    }
    let mut joiner = outcomes.into_joiner(100);
    for (i, person) in people.iter().enumerate().take(10) {
        joiner.add(at(i), &i.to_string(), Some(&wire(person, None)));
    }
    let (kept, counts) = joiner.finish();
    assert_eq!((kept.len(), counts.outcomes_over_limit), (3, 7));
    assert_eq!(kept[0].name, people[7].name);

    // Nothing kept at all with room for none.
    let mut joiner = Joiner::records_only(0);
    joiner.add(at(0), "a", Some(&wire(&people[0], Some(true))));
    assert_eq!(joiner.finish().0.len(), 0);
}
