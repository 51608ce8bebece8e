//! The changes generated to the scalar fields: numbers at and around their limits, flags in every
//! spelling, dates in every accepted and rejected shape.

use chrono::NaiveDate;
use model::validate::{
    AGE_RANGE, NUM_SITES_MAX, ONBOARD_YEAR_RANGE, TOTAL_PURCHASE_MAX, YEARS_MAX,
};
use model::Field;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use super::mutation::{change, Mutation};
use super::record::{accepted_date, insert_at, nasty_or_control, number, raw, text, Expect, Json};

/// The numeric fields' limits and whether only whole numbers count.
pub(super) fn limits(field: Field) -> (f64, f64, bool) {
    match field {
        Field::Age => (AGE_RANGE.0, AGE_RANGE.1, false),
        Field::TotalPurchase => (0.0, TOTAL_PURCHASE_MAX, false),
        Field::Years => (0.0, YEARS_MAX, false),
        Field::NumSites => (0.0, f64::from(NUM_SITES_MAX), true),
        _ => unreachable!("not a numeric field"),
    }
}

/// Age, Total_Purchase, Years, Num_Sites.
pub(super) fn numeric_mutation(field: Field) -> BoxedStrategy<Mutation> {
    use Expect::*;
    let (low, high, whole) = limits(field);
    let within = move |v: f64| (low..=high).contains(&v) && (!whole || v.fract() == 0.0);
    let expect = |v: f64| if within(v) { Scored } else { Rejected };
    let mut values = vec![
        low,
        high,
        low - 1.0,
        high + 1.0,
        (low + high) / 2.0,
        -0.0,
        0.5,
        2.0 * high,
        4_294_967_296.0,
    ];
    // Just inside and just outside, to the last bit.
    values.extend([
        low.next_up(),
        low.next_down(),
        high.next_up(),
        high.next_down(),
    ]);
    if whole {
        values.extend([low + 1.0, high - 1.0, 8.5, 1e-300]);
    }
    let mut cases: Vec<Mutation> = Vec::new();
    for v in values {
        // As text, Rust's parser is exact. As a JSON number, serde_json parses fast rather than
        // exactly: a value one unit in the last place outside a limit may come back as the limit.
        let next_to_limit = v != low
            && v != high
            && (v.next_up() == low
                || v.next_down() == low
                || v.next_up() == high
                || v.next_down() == high);
        cases.push(change(
            field,
            number(v),
            if next_to_limit { Either } else { expect(v) },
        ));
        cases.push(change(field, text(v.to_string()), expect(v)));
        cases.push(change(field, text(format!(" {v}\t")), expect(v)));
        cases.push(change(
            field,
            text(format!("\u{a0}{v:e}\u{3000}")),
            expect(v),
        ));
    }
    let mid = (low + high) / 2.0;
    for (value, expected) in [
        (text(format!("+{mid}")), expect(mid)),
        (raw(&format!("{mid}e0")), expect(mid)),
        (raw(&format!("{}E-2", mid * 100.0)), expect(mid)),
        // serde_json refuses numbers beyond f64 rather than calling them infinite.
        (raw("1e999"), Rejected),
        (raw("-1e999"), Rejected),
        (raw(&format!("1{}", "0".repeat(400))), Rejected),
        // Underflows to zero.
        (raw("1e-999"), expect(0.0)),
        (raw("-1e-999"), expect(0.0)),
        (raw("18446744073709551616"), expect(18446744073709551616.0)),
        (raw("-9223372036854775809"), Rejected),
        (raw("NaN"), Rejected),
        (raw("Infinity"), Rejected),
        (raw("-Infinity"), Rejected),
        (raw("0x10"), Rejected),
        (raw("01"), Rejected),
        (raw(".5"), Rejected),
        (raw("1."), Rejected),
        (raw("+1"), Rejected),
        (text("NaN"), Rejected),
        (text("nan"), Rejected),
        (text("inf"), Rejected),
        (text("-inf"), Rejected),
        (text("+Infinity"), Rejected),
        (text("1e999"), Rejected),
        (text("1e-999"), expect(0.0)),
        (text(""), Rejected),
        (text("  "), Rejected),
        (text("4 2"), Rejected),
        (text("4,2"), Rejected),
        (text("1_000"), Rejected),
        (text("0x10"), Rejected),
        (text("٤٢"), Rejected),
        (text("４２"), Rejected),
        (text("42\u{200B}"), Rejected),
        (text("\u{202E}42"), Rejected),
        (Json::Value(json!(true)), Rejected),
        (Json::Value(json!(false)), Rejected),
        (Json::Value(Value::Null), Rejected),
        (Json::Absent, Rejected),
        (Json::Value(json!([mid])), Rejected),
        (Json::Value(json!({"value": mid})), Rejected),
    ] {
        cases.push(change(field, value, expected));
    }
    let fixed = prop::sample::select(cases);
    let random_inside = if whole {
        (0..=NUM_SITES_MAX)
            .prop_map(move |n| change(field, number(f64::from(n)), Scored))
            .boxed()
    } else {
        (low..=high)
            .prop_map(move |v| change(field, number(v), Scored))
            .boxed()
    };
    let any_finite = any::<f64>()
        .prop_filter("finite", |v| v.is_finite())
        .prop_map(move |v| {
            change(
                field,
                text(v.to_string()),
                if within(v) { Scored } else { Rejected },
            )
        });
    // A nasty character inside a number written as text.
    let spoiled = (nasty_or_control(), any::<Index>()).prop_map(move |(inserted, at)| {
        let value = insert_at(
            &mid.to_string(),
            at.index(mid.to_string().len() + 1),
            inserted,
        );
        change(
            field,
            text(value),
            if inserted.chars().all(char::is_whitespace) {
                Either
            } else {
                Rejected
            },
        )
    });
    prop_oneof![3 => fixed, 3 => random_inside, 1 => any_finite, 1 => spoiled].boxed()
}

/// Account_Manager, Churn: every accepted spelling in any case, with padding, and near misses.
pub(super) fn flag_mutation(field: Field) -> BoxedStrategy<Mutation> {
    use Expect::*;
    let optional = field == Field::Churn;
    let missing = if optional { Scored } else { Rejected };
    let words = prop::sample::select(vec![
        "0", "1", "0.0", "1.0", "no", "yes", "false", "true", "n", "y",
    ]);
    let spelled = (words, any::<u64>(), any::<bool>()).prop_map(move |(word, case, padded)| {
        let word: String = word
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if (case >> i) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let word = if padded { format!(" {word}\t") } else { word };
        change(field, text(word), Scored)
    });
    let mut cases = vec![
        change(field, number(0.0), Scored),
        change(field, number(1.0), Scored),
        change(field, number(-0.0), Scored),
        change(field, raw("1e0"), Scored),
        change(field, raw("0E+3"), Scored),
        change(field, Json::Value(json!(true)), Scored),
        change(field, Json::Value(json!(false)), Scored),
        change(field, Json::Absent, missing),
        change(field, Json::Value(Value::Null), missing),
        change(field, text(""), missing),
        change(field, text(" \u{3000}"), missing),
    ];
    for value in [
        number(2.0),
        number(-1.0),
        number(0.5),
        number(f64::MIN_POSITIVE),
        raw("1e999"),
        text("2"),
        text("maybe"),
        text("ja"),
        text("oui"),
        text("yes please"),
        text("tru"),
        text("１"),
        text("١"),
        text("Y\u{301}"),
        text("ye\u{200B}s"),
        text("NaN"),
        text("01"),
        Json::Value(json!([1])),
        Json::Value(json!({"yes": true})),
    ] {
        cases.push(change(field, value, Rejected));
    }
    // serde_json may read this one as 1 (see `numeric_mutation`).
    cases.push(change(field, number(1.0f64.next_up()), Either));
    prop_oneof![3 => spelled, 2 => prop::sample::select(cases)].boxed()
}

/// Onboard_date.
pub(super) fn date_mutation() -> BoxedStrategy<Mutation> {
    use Expect::*;
    let field = Field::OnboardDate;
    let (first, last) = ONBOARD_YEAR_RANGE;
    let leap = (first..=last)
        .find(|&y| NaiveDate::from_ymd_opt(y, 2, 29).is_some())
        .unwrap();
    let common = (first..=last)
        .find(|&y| NaiveDate::from_ymd_opt(y, 2, 29).is_none())
        .unwrap();
    let accepted = accepted_date().prop_map(move |date| change(field, text(date), Scored));
    let mut cases = vec![
        change(field, text(format!("{first}-01-01 00:00:00")), Scored),
        change(field, text(format!("{last}-12-31 23:59:59")), Scored),
        change(field, text(format!("{leap}-02-29 12:00")), Scored),
    ];
    let rejected = [
        format!("{}-12-31 23:59:59", first - 1),
        format!("{}-01-01 00:00:00", last + 1),
        "0000-01-01 00:00:00".into(),
        "9999-12-31 23:59:59".into(),
        format!("{common}-02-29 00:00:00"),
        format!("{leap}-02-30 00:00:00"),
        format!("{leap}-04-31 00:00:00"),
        format!("{leap}-00-10 00:00:00"),
        format!("{leap}-13-10 00:00:00"),
        format!("{leap}-01-00 00:00:00"),
        format!("{leap}-01-32 00:00:00"),
        format!("{leap}-01-10 24:00:00"),
        format!("{leap}-01-10 23:60:00"),
        format!("{leap}-01-10 23:59:60"),
        format!("{leap}-01-10 07:00:40:00"),
        format!("{leap}-01-10-01 07:00:40"),
        format!("{leap}-01-10"),
        "07:00:40".into(),
        format!("{leap}-001-10 07:00:40"),
        format!("{leap}-01-10 007:00:40"),
        format!("0{leap}-01-10 07:00:40"),
        format!("-{leap}-01-10 07:00:40"),
        format!("+{leap}-01-10 07:00:40"),
        format!("{leap}-01-10t07:00:40"),
        format!("{leap}-01-10T07:00:40Z"),
        format!("{leap}-01-10T07:00:40+01:00"),
        format!("{leap}-01-10 07:00:40.5"),
        format!("{leap}-01-10  07:00:40"),
        format!("{leap}-01-10 T07:00:40"),
        format!("{leap}/01/10 07:00:40"),
        format!("{leap}-01-10_07:00"),
        format!("{leap}-01-10 07"),
        format!("{leap}-01-10 07:"),
        format!("{leap}-01-10 :00"),
        "".into(),
        "-- ::".into(),
        // Digits of other scripts are digits to Unicode but not to the schema.
        "٢٠١٣-٠٨-٣٠ ٠٧:٠٠:٤٠".into(),
        "２０１３-０８-３０ ０７:００:４０".into(),
        "२०१३-०८-३० ०७:००:४०".into(),
    ];
    cases.extend(
        rejected
            .into_iter()
            .map(|date| change(field, text(date), Rejected)),
    );
    for value in [
        number(20130830.0),
        Json::Value(json!(true)),
        Json::Value(Value::Null),
        Json::Absent,
        Json::Value(json!(["2013-08-30 07:00:40"])),
    ] {
        cases.push(change(field, value, Rejected));
    }
    // One digit of a valid date replaced by a non-ASCII digit (Arabic-Indic, full-width,
    // Devanagari, superscript), or a nasty character inserted anywhere.
    let foreign_digit = (
        accepted_date(),
        prop::sample::select(vec![0x660u32, 0xFF10, 0x966, 0x2070]),
        any::<Index>(),
        0u32..10,
    )
        .prop_map(move |(date, zero, at, digit)| {
            let positions: Vec<usize> = date
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            let at = positions[at.index(positions.len())];
            let foreign = char::from_u32(zero + digit).unwrap_or('²');
            let mut spoiled = date.clone();
            spoiled.replace_range(at..at + 1, foreign.encode_utf8(&mut [0; 4]));
            change(field, text(spoiled), Rejected)
        });
    let inserted = (accepted_date(), nasty_or_control(), any::<Index>()).prop_map(
        move |(date, inserted, at)| {
            let value = insert_at(&date, at.index(date.chars().count() + 1), inserted);
            let expect = if inserted.chars().all(char::is_whitespace) {
                Either
            } else {
                Rejected
            };
            change(field, text(value), expect)
        },
    );
    prop_oneof![4 => accepted, 2 => prop::sample::select(cases), 1 => foreign_digit, 1 => inserted]
        .boxed()
}
