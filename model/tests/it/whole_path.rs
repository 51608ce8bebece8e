//! The scorer's whole per-record path — bytes, `score_record`, `encode_json`, a reader parsing the
//! prediction back — driven by records that get past parsing (issue 11: random records were
//! nearly all rejected early, so a panic in the address segmenter went unfound). Generators start
//! from valid records and change exactly one field: non-ASCII at every character boundary,
//! lengths at the limit, numbers at and around their limits, dates in every accepted and rejected
//! shape, flags in every spelling. Every record must end as a prediction or as a dead letter with
//! a reason, never a panic; a rejected record names the changed field only; and most generated
//! records must reach scoring.

use std::cell::RefCell;
use std::collections::BTreeMap;

use chrono::NaiveDate;
use model::record::{encode_json, score_record, Rejection};
use model::validate::{AGE_RANGE, NUM_SITES_MAX, ONBOARD_YEAR_RANGE, TEXT_MAX_CHARS, TOTAL_PURCHASE_MAX, YEARS_MAX};
use model::{ChurnModel, Field, FieldError, Prediction};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

const SCORED_AT: &str = "2026-01-01T00:00:00Z";

/// Characters that break code assuming one byte per character, or that hide in text: 2-, 3- and
/// 4-byte characters, combining marks, zero-width and bidirectional controls, emoji sequences.
/// None is a control character or whitespace, so validation keeps them all.
const NASTY: [&str; 14] = [
    "é",
    "€",
    "𝄞",
    "e\u{301}",
    "\u{301}",
    "\u{200B}",
    "\u{200D}",
    "\u{202E}",
    "\u{2066}",
    "\u{FEFF}",
    "\u{1F469}\u{200D}\u{1F469}\u{200D}\u{1F467}",
    "\u{1F1FA}\u{1F1F8}",
    "\u{FFFD}",
    "\u{10FFFF}",
];

/// Control characters: rejected inside text. The whitespace ones are trimmed away at the ends.
const CONTROLS: [&str; 8] = ["\0", "\u{1}", "\u{1b}", "\u{7f}", "\u{9f}", "\t", "\n", "\u{85}"];

include!("support/every_feature_model.rs");

fn model() -> ChurnModel {
    every_feature_model("m-whole-path")
}

/// One field's value as the producer writes it.
#[derive(Debug, Clone)]
enum Json {
    Absent,
    Value(Value),
    /// What `Value` cannot hold: out-of-range numbers, NaN, bad escapes, invalid UTF-8.
    Raw(Vec<u8>),
}

fn text(s: impl Into<String>) -> Json {
    Json::Value(Value::String(s.into()))
}

fn number(n: f64) -> Json {
    Json::Value(json!(n))
}

fn raw(s: &str) -> Json {
    Json::Raw(s.as_bytes().to_vec())
}

/// What a record must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Scored,
    Rejected,
    /// Either is right: the value is ambiguous (see where it is used).
    Either,
}

#[derive(Debug, Clone)]
struct Record {
    /// Every field once, in the order the producer writes them.
    fields: Vec<(Field, Json)>,
    /// Members appended as they are: unknown, duplicated or misspelt keys.
    extra: Option<String>,
    /// The US state the address segment must show, when the generator knows it.
    state: Option<Option<String>>,
}

impl Record {
    fn set(&mut self, field: Field, value: Json) {
        let slot = self.fields.iter_mut().find(|(f, _)| *f == field).expect("every field has a slot");
        slot.1 = value;
    }

    fn get(&self, field: Field) -> &Json {
        &self.fields.iter().find(|(f, _)| *f == field).expect("every field has a slot").1
    }

    /// The JSON object, every value written by serde_json (or raw, when JSON cannot hold it).
    fn payload(&self) -> Vec<u8> {
        let mut members: Vec<Vec<u8>> = Vec::new();
        for (field, value) in &self.fields {
            let value = match value {
                Json::Absent => continue,
                Json::Value(v) => serde_json::to_vec(v).unwrap(),
                Json::Raw(bytes) => bytes.clone(),
            };
            let mut member = serde_json::to_vec(field.column()).unwrap();
            member.push(b':');
            member.extend(value);
            members.push(member);
        }
        members.extend(self.extra.iter().map(|extra| extra.as_bytes().to_vec()));
        let mut out = b"{".to_vec();
        out.extend(members.join(&b","[..]));
        out.push(b'}');
        out
    }
}

/// How one field changes.
#[derive(Debug, Clone)]
enum Change {
    Value(Json),
    /// Unknown keys added beside it: ignored.
    UnknownKeysBeside,
    /// Its key written last: order does not matter.
    MovedLast,
    /// Its key written twice: which value counts would be unclear, so the record is refused.
    Duplicated,
    /// Its key in lower case: JSON keys are exact, so the field is missing.
    Misspelt,
}

/// One field changed and what the record must then come to.
#[derive(Debug, Clone)]
struct Mutation {
    field: Field,
    change: Change,
    expect: Expect,
    /// For address mutations: the state segment the prediction must show.
    state: Option<Option<String>>,
}

fn change(field: Field, value: Json, expect: Expect) -> Mutation {
    Mutation { field, change: Change::Value(value), expect, state: None }
}

impl Mutation {
    /// Changes the record; returns the changed field, what to expect and a label to count by.
    fn apply(self, record: &mut Record) -> (Field, Expect, &'static str) {
        let field = self.field;
        let column = field.column();
        let current = match record.get(field) {
            Json::Absent => None,
            Json::Value(v) => Some(serde_json::to_string(v).unwrap()),
            Json::Raw(bytes) => Some(String::from_utf8(bytes.clone()).unwrap()),
        };
        let required = !matches!(field, Field::Location | Field::Company | Field::Churn);
        let (expect, label) = match self.change {
            Change::Value(value) => {
                record.set(field, value);
                if field == Field::Location {
                    record.state = self.state;
                }
                return (field, self.expect, column);
            }
            Change::UnknownKeysBeside => {
                record.extra = Some(r#""Notes":{"deep":[[[["x"]]]],"n":null},"names":"ignored","":1"#.into());
                (Expect::Scored, "(unknown keys)")
            }
            Change::MovedLast => {
                record.set(field, Json::Absent);
                record.extra = current.map(|value| format!(r#""{column}":{value}"#));
                (Expect::Scored, "(key order)")
            }
            Change::Duplicated => {
                record.extra = current.as_ref().map(|value| format!(r#""{column}":{value}"#));
                (if current.is_some() { Expect::Rejected } else { Expect::Scored }, "(duplicate keys)")
            }
            Change::Misspelt => {
                record.set(field, Json::Absent);
                record.extra = current.map(|value| format!(r#""{}":{value}"#, column.to_lowercase()));
                if field == Field::Location {
                    record.state = Some(None);
                }
                (if required { Expect::Rejected } else { Expect::Scored }, "(misspelt keys)")
            }
        };
        (field, expect, label)
    }
}

/// A valid record's pieces, all within the limits of `model::validate`.
fn valid_record() -> impl Strategy<Value = Record> {
    let names = prop::sample::select(vec![
        "Cameron Williams", "Zoë Ñúñez", "李小龍", "Ægir Þórsson", "O'Brien-Smith", "Αλέξανδρος", "محمد علي", "A",
    ]);
    let companies = prop::sample::select(vec!["Harvey LLC", "Müller & Söhne GmbH", "株式会社テスト", "", "X"]);
    let flag = prop_oneof![Just(number(0.0)), Just(number(1.0)), Just(Json::Value(json!(true))), Just(text("no"))];
    let churn = prop_oneof![Just(Json::Absent), Just(number(0.0)), Just(number(1.0)), Just(text("yes"))];
    (
        names,
        loose_number(AGE_RANGE.0, AGE_RANGE.1),
        loose_number(0.0, TOTAL_PURCHASE_MAX),
        flag,
        loose_number(0.0, YEARS_MAX),
        (0..=NUM_SITES_MAX).prop_map(|n| number(f64::from(n))),
        accepted_date().prop_map(text),
        address(),
        companies,
        churn,
        Just(Field::ALL.to_vec()).prop_shuffle(),
    )
        .prop_map(|(name, age, purchase, manager, years, sites, date, (location, state), company, churn, order)| {
            let values = [
                (Field::Names, text(name)),
                (Field::Age, age),
                (Field::TotalPurchase, purchase),
                (Field::AccountManager, manager),
                (Field::Years, years),
                (Field::NumSites, sites),
                (Field::OnboardDate, date),
                (Field::Location, text(location)),
                (Field::Company, text(company)),
                (Field::Churn, churn),
            ];
            let fields = order
                .into_iter()
                .map(|field| values.iter().find(|(f, _)| *f == field).unwrap().clone())
                .collect();
            Record { fields, extra: None, state: Some(state) }
        })
}

/// A number within `[low, high]`, as a JSON number or as a string (producers send both).
fn loose_number(low: f64, high: f64) -> impl Strategy<Value = Json> {
    let value = prop_oneof![
        ((low * 100.0) as i64..=(high * 100.0) as i64).prop_map(|cents| cents as f64 / 100.0),
        low..=high,
    ];
    (value, any::<bool>()).prop_map(|(v, as_text)| if as_text { text(v.to_string()) } else { number(v) })
}

const STATES: [&str; 6] = ["AK", "IL", "CA", "NY", "DC", "WY"];

/// An address and the state segment it must give.
fn address() -> impl Strategy<Value = (String, Option<String>)> {
    let us = (1u32..99_999, prop::sample::select(STATES.to_vec()), zip())
        .prop_map(|(number, state, zip)| (format!("{number} Elizabeth Mission Barkerburgh, {state} {zip}"), Some(state.to_owned())));
    prop_oneof![
        us,
        Just(("Rue de Rivoli, Paris".to_owned(), None)),
        Just(("Unit 0789 Box 0734 DPO AP 91200".to_owned(), None)),
        Just(("Straße des 17. Juni 135, 10623 Berlin".to_owned(), None)),
        Just((String::new(), None)),
    ]
}

/// "NNNNN" or "NNNNN-NNNN".
fn zip() -> impl Strategy<Value = String> {
    (0u32..100_000, prop::option::of(0u32..10_000)).prop_map(|(zip, plus4)| match plus4 {
        Some(p) => format!("{zip:05}-{p:04}"),
        None => format!("{zip:05}"),
    })
}

/// Whether validation keeps text with `inserted` added inside: any control character that is
/// not whitespace is refused; whitespace controls are refused inside and trimmed at the ends.
fn expect_with(inserted: &str) -> Expect {
    if inserted.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        Expect::Rejected
    } else if inserted.chars().any(char::is_control) {
        Expect::Either
    } else {
        Expect::Scored
    }
}

fn insert_at(base: &str, char_index: usize, inserted: &str) -> String {
    let at = base.char_indices().nth(char_index).map_or(base.len(), |(i, _)| i);
    let mut out = base.to_owned();
    out.insert_str(at, inserted);
    out
}

fn nasty_or_control() -> impl Strategy<Value = &'static str> {
    prop_oneof![5 => prop::sample::select(NASTY.to_vec()), 1 => prop::sample::select(CONTROLS.to_vec())]
}

/// Names, Location, Company.
fn text_mutation(field: Field) -> BoxedStrategy<Mutation> {
    let required = field == Field::Names;
    let bases = vec!["Cameron Williams", "Zoë Ñúñez-李 👍", "10265 Elizabeth Mission Barkerburgh, AK 89518", "e\u{301}"];
    let insertions = (prop::sample::select(bases), prop::collection::vec((nasty_or_control(), any::<Index>()), 1..=3))
        .prop_map(move |(base, inserts)| {
            let mut value = base.to_owned();
            let mut expect = Expect::Scored;
            for (inserted, at) in inserts {
                value = insert_at(&value, at.index(value.chars().count() + 1), inserted);
                expect = match (expect, expect_with(inserted)) {
                    (Expect::Rejected, _) | (_, Expect::Rejected) => Expect::Rejected,
                    (Expect::Either, _) | (_, Expect::Either) => Expect::Either,
                    _ => Expect::Scored,
                };
            }
            change(field, text(value), expect)
        });
    // Exactly the longest text allowed and one character more, in 1- to 4-byte characters,
    // and with padding (trimmed before counting).
    let lengths = (
        prop::sample::select(vec!["a", "é", "€", "𝄞", "\u{200B}"]),
        prop::sample::select(vec![1, TEXT_MAX_CHARS - 1, TEXT_MAX_CHARS, TEXT_MAX_CHARS + 1, 20 * TEXT_MAX_CHARS]),
        any::<bool>(),
    )
        .prop_map(move |(c, n, padded)| {
            let value = c.repeat(n);
            let value = if padded { format!("  {value}\u{3000}") } else { value };
            change(field, text(value), if n <= TEXT_MAX_CHARS { Expect::Scored } else { Expect::Rejected })
        });
    // "é" as e + combining acute is two characters: the limit counts characters, not graphemes.
    let combining = prop::sample::select(vec![TEXT_MAX_CHARS / 2, TEXT_MAX_CHARS / 2 + 1]).prop_map(move |n| {
        let expect = if 2 * n <= TEXT_MAX_CHARS { Expect::Scored } else { Expect::Rejected };
        change(field, text("e\u{301}".repeat(n)), expect)
    });
    let empty = if required { Expect::Rejected } else { Expect::Scored };
    let others = prop::sample::select(vec![
        change(field, text(""), empty),
        change(field, text("   \u{3000}\u{a0}"), empty),
        change(field, Json::Absent, empty),
        change(field, Json::Value(Value::Null), empty),
        change(field, number(12_345.0), Expect::Scored),
        // Written out, 1e300 is 301 digits: too long.
        change(field, number(1e300), Expect::Rejected),
        change(field, Json::Value(json!(true)), Expect::Rejected),
        change(field, Json::Value(json!(["x"])), Expect::Rejected),
        change(field, Json::Value(json!({"x": 1})), Expect::Rejected),
        change(field, raw(r#""\u0000""#), Expect::Rejected),
        change(field, raw(r#""Ann\u202eLLC""#), Expect::Scored),
        change(field, raw(r#""\ud83d\ude00""#), Expect::Scored),
        // A lone surrogate is not a character: no JSON parser may accept it.
        change(field, raw(r#""\ud800""#), Expect::Rejected),
        change(field, raw(r#""\udc00x""#), Expect::Rejected),
        change(field, Json::Raw(b"\"caf\xc3\"".to_vec()), Expect::Rejected),
        change(field, Json::Raw(b"\"\xed\xa0\x80\"".to_vec()), Expect::Rejected),
        change(field, raw("\"unterminated"), Expect::Rejected),
    ]);
    if field == Field::Location {
        prop_oneof![4 => insertions, 1 => lengths, 1 => combining, 2 => others, 4 => zip_mutation()].boxed()
    } else {
        prop_oneof![4 => insertions, 1 => lengths, 1 => combining, 2 => others].boxed()
    }
}

/// US addresses whose ZIP gets a foreign character at one of its positions (inserted or in
/// place of a digit): the segmenter reads the ZIP byte by byte and must not panic, nor see a state.
fn zip_mutation() -> impl Strategy<Value = Mutation> {
    (prop::sample::select(STATES.to_vec()), zip(), nasty_or_control(), any::<Index>(), any::<bool>()).prop_map(
        |(state, zip, inserted, at, replace)| {
            let mut chars: Vec<String> = zip.chars().map(String::from).collect();
            let at = at.index(chars.len() + usize::from(!replace));
            if replace {
                chars[at] = inserted.to_owned();
            } else {
                chars.insert(at, inserted.to_owned());
            }
            let address = format!("1 Main St, {state} {}", chars.concat());
            let expect = expect_with(inserted);
            // Whitespace may split or end the token instead; only a visible character is sure
            // to spoil it.
            let segment = (!inserted.chars().any(char::is_whitespace)).then_some(None);
            Mutation { state: segment, ..change(Field::Location, text(address), expect) }
        },
    )
}

/// The numeric fields' limits and whether only whole numbers count.
fn limits(field: Field) -> (f64, f64, bool) {
    match field {
        Field::Age => (AGE_RANGE.0, AGE_RANGE.1, false),
        Field::TotalPurchase => (0.0, TOTAL_PURCHASE_MAX, false),
        Field::Years => (0.0, YEARS_MAX, false),
        Field::NumSites => (0.0, f64::from(NUM_SITES_MAX), true),
        _ => unreachable!("not a numeric field"),
    }
}

/// Age, Total_Purchase, Years, Num_Sites.
fn numeric_mutation(field: Field) -> BoxedStrategy<Mutation> {
    use Expect::*;
    let (low, high, whole) = limits(field);
    let within = move |v: f64| (low..=high).contains(&v) && (!whole || v.fract() == 0.0);
    let expect = |v: f64| if within(v) { Scored } else { Rejected };
    let mut values = vec![low, high, low - 1.0, high + 1.0, (low + high) / 2.0, -0.0, 0.5, 2.0 * high, 4_294_967_296.0];
    // Just inside and just outside, to the last bit.
    values.extend([low.next_up(), low.next_down(), high.next_up(), high.next_down()]);
    if whole {
        values.extend([low + 1.0, high - 1.0, 8.5, 1e-300]);
    }
    let mut cases: Vec<Mutation> = Vec::new();
    for v in values {
        // As text, Rust's parser is exact. As a JSON number, serde_json parses fast rather than
        // exactly: a value one unit in the last place outside a limit may come back as the limit.
        let next_to_limit = v != low && v != high && (v.next_up() == low || v.next_down() == low || v.next_up() == high || v.next_down() == high);
        cases.push(change(field, number(v), if next_to_limit { Either } else { expect(v) }));
        cases.push(change(field, text(v.to_string()), expect(v)));
        cases.push(change(field, text(format!(" {v}\t")), expect(v)));
        cases.push(change(field, text(format!("\u{a0}{v:e}\u{3000}")), expect(v)));
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
        (0..=NUM_SITES_MAX).prop_map(move |n| change(field, number(f64::from(n)), Scored)).boxed()
    } else {
        (low..=high).prop_map(move |v| change(field, number(v), Scored)).boxed()
    };
    let any_finite = any::<f64>()
        .prop_filter("finite", |v| v.is_finite())
        .prop_map(move |v| change(field, text(v.to_string()), if within(v) { Scored } else { Rejected }));
    // A nasty character inside a number written as text.
    let spoiled = (nasty_or_control(), any::<Index>()).prop_map(move |(inserted, at)| {
        let value = insert_at(&mid.to_string(), at.index(mid.to_string().len() + 1), inserted);
        change(field, text(value), if inserted.chars().all(char::is_whitespace) { Either } else { Rejected })
    });
    prop_oneof![3 => fixed, 3 => random_inside, 1 => any_finite, 1 => spoiled].boxed()
}

/// Account_Manager, Churn: every accepted spelling in any case, with padding, and near misses.
fn flag_mutation(field: Field) -> BoxedStrategy<Mutation> {
    use Expect::*;
    let optional = field == Field::Churn;
    let missing = if optional { Scored } else { Rejected };
    let words = prop::sample::select(vec!["0", "1", "0.0", "1.0", "no", "yes", "false", "true", "n", "y"]);
    let spelled = (words, any::<u64>(), any::<bool>()).prop_map(move |(word, case, padded)| {
        let word: String = word
            .chars()
            .enumerate()
            .map(|(i, c)| if (case >> i) & 1 == 1 { c.to_ascii_uppercase() } else { c })
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

/// A real date in the allowed years, written in an accepted shape (space or T separator, with or
/// without seconds, with or without leading zeros, padded).
fn accepted_date() -> impl Strategy<Value = String> {
    let (first, last) = ONBOARD_YEAR_RANGE;
    let year = prop_oneof![Just(first), Just(last), first..=last];
    (year, 1u32..=12, 1u32..=31, 0u32..24, 0u32..60, 0u32..60, any::<[bool; 5]>(), any::<bool>(), any::<bool>(), any::<bool>())
        .prop_filter_map("a real calendar day", |(y, m, d, h, min, s, pad, t, seconds, padded)| {
            NaiveDate::from_ymd_opt(y, m, d)?;
            let part = |value: u32, pad: bool| if pad { format!("{value:02}") } else { value.to_string() };
            let mut text = format!("{y}-{}-{}{}{}:{}", part(m, pad[0]), part(d, pad[1]), if t { 'T' } else { ' ' }, part(h, pad[2]), part(min, pad[3]));
            if seconds {
                text += &format!(":{}", part(s, pad[4]));
            }
            if padded {
                text = format!(" {text}\u{a0}");
            }
            Some(text)
        })
}

/// Onboard_date.
fn date_mutation() -> BoxedStrategy<Mutation> {
    use Expect::*;
    let field = Field::OnboardDate;
    let (first, last) = ONBOARD_YEAR_RANGE;
    let leap = (first..=last).find(|&y| NaiveDate::from_ymd_opt(y, 2, 29).is_some()).unwrap();
    let common = (first..=last).find(|&y| NaiveDate::from_ymd_opt(y, 2, 29).is_none()).unwrap();
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
    cases.extend(rejected.into_iter().map(|date| change(field, text(date), Rejected)));
    for value in [number(20130830.0), Json::Value(json!(true)), Json::Value(Value::Null), Json::Absent, Json::Value(json!(["2013-08-30 07:00:40"]))] {
        cases.push(change(field, value, Rejected));
    }
    // One digit of a valid date replaced by a non-ASCII digit (Arabic-Indic, full-width,
    // Devanagari, superscript), or a nasty character inserted anywhere.
    let foreign_digit = (accepted_date(), prop::sample::select(vec![0x660u32, 0xFF10, 0x966, 0x2070]), any::<Index>(), 0u32..10)
        .prop_map(move |(date, zero, at, digit)| {
            let positions: Vec<usize> = date.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
            let at = positions[at.index(positions.len())];
            let foreign = char::from_u32(zero + digit).unwrap_or('²');
            let mut spoiled = date.clone();
            spoiled.replace_range(at..at + 1, foreign.encode_utf8(&mut [0; 4]));
            change(field, text(spoiled), Rejected)
        });
    let inserted = (accepted_date(), nasty_or_control(), any::<Index>()).prop_map(move |(date, inserted, at)| {
        let value = insert_at(&date, at.index(date.chars().count() + 1), inserted);
        let expect = if inserted.chars().all(char::is_whitespace) { Either } else { Rejected };
        change(field, text(value), expect)
    });
    prop_oneof![4 => accepted, 2 => prop::sample::select(cases), 1 => foreign_digit, 1 => inserted].boxed()
}

/// Changes to the object rather than to a value: unknown, moved, duplicated, misspelt keys.
fn key_mutation() -> BoxedStrategy<Mutation> {
    let changes = vec![Change::UnknownKeysBeside, Change::MovedLast, Change::Duplicated, Change::Misspelt];
    (prop::sample::select(Field::ALL.to_vec()), prop::sample::select(changes))
        // The expectation depends on the record: `Mutation::apply` decides it.
        .prop_map(|(field, change)| Mutation { field, change, expect: Expect::Either, state: None })
        .boxed()
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        text_mutation(Field::Names),
        numeric_mutation(Field::Age),
        numeric_mutation(Field::TotalPurchase),
        flag_mutation(Field::AccountManager),
        numeric_mutation(Field::Years),
        numeric_mutation(Field::NumSites),
        date_mutation(),
        text_mutation(Field::Location),
        text_mutation(Field::Company),
        flag_mutation(Field::Churn),
        key_mutation(),
    ]
}

/// Floats a reader parses back may differ in the last bit: serde_json's fast float parsing.
fn close(a: f64, b: f64) -> bool {
    a == b || a.next_up() == b || a.next_down() == b
}

/// The whole per-record path with its checks: a prediction that a reader parses back as it was
/// sent, or a rejection with a reason (and, when the record was an object, its field errors).
fn whole_path(id: &str, payload: &[u8], model: &ChurnModel) -> Result<Result<Prediction, Rejection>, String> {
    let prediction = match score_record(id, Some(payload), model, SCORED_AT) {
        Ok(prediction) => prediction,
        Err(rejection) => {
            if rejection.reason.trim().is_empty() {
                return Err("a rejection without a reason".into());
            }
            if let Some(errors) = &rejection.field_errors {
                let errors: Vec<FieldError> = serde_json::from_str(errors).map_err(|e| format!("field errors: {e}"))?;
                if errors.is_empty() || errors.iter().any(|e| e.message.trim().is_empty()) {
                    return Err(format!("field errors without messages: {errors:?}"));
                }
            }
            return Ok(Err(rejection));
        }
    };
    let p = &prediction;
    let factors_ok = p.top_factors.len() == model::message::TOP_FACTORS.min(model.features.len())
        && p.top_factors.iter().all(|f| f.value.is_finite() && f.log_odds.is_finite());
    if !((0.0..=1.0).contains(&p.churn_probability) && p.churn == (p.churn_probability >= model.threshold) && factors_ok)
        || p.id != id
        || p.model_version != model.version
    {
        return Err(format!("an inconsistent prediction: {p:?}"));
    }
    // The scorer appends each prediction to a batch buffer.
    let mut out = b"previous record".to_vec();
    encode_json(p, &mut out)?;
    let json = out.strip_prefix(b"previous record").ok_or("encode_json overwrote the buffer")?;
    let back: Prediction = serde_json::from_slice(json).map_err(|e| format!("the prediction does not parse back: {e}"))?;
    let same_numbers = close(back.churn_probability, p.churn_probability)
        && back.top_factors.iter().zip(&p.top_factors).all(|(a, b)| {
            a.feature == b.feature && close(a.value, b.value) && close(a.log_odds, b.log_odds)
        });
    let unchanged = Prediction { churn_probability: p.churn_probability, top_factors: p.top_factors.clone(), ..back.clone() };
    if !same_numbers || unchanged != *p {
        return Err(format!("the prediction changed on the wire: {back:?} != {p:?}"));
    }
    Ok(Ok(prediction))
}

/// Checks one mutated record's outcome against what the mutation expects; true when scored.
fn check(record: &Record, field: Field, expect: Expect, model: &ChurnModel) -> Result<bool, String> {
    let payload = record.payload();
    let shown = || String::from_utf8_lossy(&payload).into_owned();
    match whole_path("rec-1", &payload, model).map_err(|e| format!("{e}\nrecord: {}", shown()))? {
        Ok(prediction) => {
            if expect == Expect::Rejected {
                return Err(format!("scored, but {field} should have been refused: {}", shown()));
            }
            if let Some(state) = &record.state {
                if prediction.segments.state != *state {
                    return Err(format!("state segment {:?}, expected {state:?}: {}", prediction.segments.state, shown()));
                }
            }
            Ok(true)
        }
        Err(rejection) => {
            if expect == Expect::Scored {
                return Err(format!("refused ({}), but should be scored: {}", rejection.reason, shown()));
            }
            // The record was valid before one field changed: only that field may be blamed.
            if let Some(errors) = &rejection.field_errors {
                let errors: Vec<FieldError> = serde_json::from_str(errors).unwrap();
                if errors.iter().any(|e| e.field != field) {
                    return Err(format!("{field} changed, but {errors:?} were blamed: {}", shown()));
                }
            }
            Ok(false)
        }
    }
}

#[test]
fn one_changed_field_is_scored_or_dead_lettered_with_its_reason() {
    let model = model();
    let mut runner = TestRunner::new(Config { cases: 6000, ..Config::with_source_file(file!()) });
    // By what changed: (records, scored).
    let counts: RefCell<BTreeMap<&'static str, (usize, usize)>> = RefCell::default();
    let strategy = (valid_record(), mutation());
    runner
        .run(&strategy, |(mut record, mutation)| {
            let (field, expect, label) = mutation.apply(&mut record);
            let scored = check(&record, field, expect, &model).map_err(TestCaseError::fail)?;
            let mut counts = counts.borrow_mut();
            let entry = counts.entry(label).or_default();
            entry.0 += 1;
            entry.1 += usize::from(scored);
            Ok(())
        })
        .unwrap();
    let counts = counts.into_inner();
    let (records, scored) = counts.values().fold((0, 0), |(r, s), (records, scored)| (r + records, s + scored));
    let share = scored as f64 / records as f64;
    let by_field: Vec<String> = counts.iter().map(|(field, (r, s))| format!("{field} {s}/{r}")).collect();
    eprintln!("{scored} of {records} generated records reached scoring ({:.0}%); by changed field: {}", 100.0 * share, by_field.join(", "));
    assert!(share >= 0.5, "only {:.0}% of generated records reached scoring", 100.0 * share);
}

/// The fixed good record of the exhaustive tests, with multi-byte text so that character
/// boundaries and byte offsets differ.
fn good_record() -> Record {
    Record {
        fields: vec![
            (Field::Names, text("Zoë Ñúñez-李 👍")),
            (Field::Age, number((AGE_RANGE.0 + AGE_RANGE.1) / 2.0)),
            (Field::TotalPurchase, number(TOTAL_PURCHASE_MAX / 1e5)),
            (Field::AccountManager, number(1.0)),
            (Field::Years, number(YEARS_MAX / 20.0)),
            (Field::NumSites, number(f64::from(NUM_SITES_MAX / 10_000))),
            (Field::OnboardDate, text(format!("{}-08-30 07:00:40", ONBOARD_YEAR_RANGE.0 + 63))),
            (Field::Location, text("10265 Élizabeth Mission Barkerburgh, AK 89518")),
            (Field::Company, text("Müller & Söhne €")),
            (Field::Churn, number(0.0)),
        ],
        extra: None,
        state: Some(Some("AK".into())),
    }
}

#[test]
fn the_good_record_is_scored() {
    let record = good_record();
    let prediction = whole_path("good", &record.payload(), &model()).unwrap().unwrap();
    assert_eq!(prediction.name, "Zoë Ñúñez-李 👍");
    assert_eq!(prediction.segments.state.as_deref(), Some("AK"));
    assert_eq!(prediction.actual_churn, Some(false));
}

#[test]
fn every_nasty_character_at_every_byte_offset_of_every_text_field() {
    let model = model();
    let mut runs = 0;
    for field in [Field::Names, Field::Location, Field::Company, Field::OnboardDate] {
        let Json::Value(Value::String(base)) = good_record().get(field).clone() else { unreachable!() };
        for inserted in NASTY.into_iter().chain(CONTROLS) {
            for offset in (0..=base.len()).filter(|&i| base.is_char_boundary(i)) {
                let mut value = base.clone();
                value.insert_str(offset, inserted);
                let mut record = good_record();
                record.set(field, text(value.clone()));
                // Anything inside the address may change its state; only the ZIP test checks it.
                record.state = None;
                let expect = match field {
                    Field::OnboardDate if inserted.chars().all(char::is_whitespace) => Expect::Either,
                    Field::OnboardDate => Expect::Rejected,
                    _ => expect_with(inserted),
                };
                let outcome = whole_path("rec", &record.payload(), &model)
                    .unwrap_or_else(|e| panic!("{field} = {value:?}: {e}"));
                match (outcome, expect) {
                    (Ok(prediction), Expect::Scored | Expect::Either) => {
                        if field == Field::Names {
                            assert_eq!(prediction.name, value.trim(), "the name is kept as sent");
                        }
                    }
                    (Err(_), Expect::Rejected | Expect::Either) => {}
                    (outcome, expect) => panic!("{field} = {value:?}: expected {expect:?}, got {outcome:?}"),
                }
                runs += 1;
            }
        }
    }
    eprintln!("{runs} records, each with one character inserted at one byte offset");
}

#[test]
fn a_foreign_character_anywhere_in_a_zip_leaves_the_state_unknown() {
    let model = model();
    for zip in ["89518", "89518-1234"] {
        let mut record = good_record();
        record.set(Field::Location, text(format!("1 Main St, AK {zip}")));
        assert_eq!(whole_path("z", &record.payload(), &model).unwrap().unwrap().segments.state.as_deref(), Some("AK"));
        for inserted in NASTY {
            for offset in 0..=zip.len() {
                for replace in [false, true] {
                    if replace && offset == zip.len() {
                        continue;
                    }
                    let mut spoiled = zip.to_owned();
                    spoiled.replace_range(offset..offset + usize::from(replace), inserted);
                    record.set(Field::Location, text(format!("1 Main St, AK {spoiled}")));
                    let prediction = whole_path("z", &record.payload(), &model).unwrap().expect("scored");
                    assert_eq!(prediction.segments.state, None, "{spoiled:?}");
                }
            }
        }
    }
}

/// Issue 11: ZIP-sized tokens (5 and 10 bytes, the lengths the segmenter slices) with a multi-byte
/// character at every byte offset it fits, alone and on either side of a ZIP+4 dash.
#[test]
fn zip_sized_tokens_with_a_multi_byte_character_at_every_byte_offset() {
    let model = model();
    let mut record = good_record();
    record.set(Field::Location, text("1 Main St, AK 123€abcd"));
    assert_eq!(whole_path("issue-11", &record.payload(), &model).unwrap().unwrap().segments.state, None);
    let fill = |wide: &str, len: usize, offset: usize| format!("{}{wide}{}", "1".repeat(offset), "2".repeat(len - wide.len() - offset));
    for wide in ["é", "€", "𝄞"] {
        let mut tokens = Vec::new();
        for len in [5, 10] {
            tokens.extend((0..=len - wide.len()).map(|offset| fill(wide, len, offset)));
        }
        tokens.extend((0..=4 - wide.len()).map(|offset| format!("12345-{}", fill(wide, 4, offset))));
        tokens.extend((0..=5 - wide.len()).map(|offset| format!("{}-6789", fill(wide, 5, offset))));
        for token in tokens {
            assert!([5, 10].contains(&token.len()), "{token:?}");
            record.set(Field::Location, text(format!("1 Main St, AK {token}")));
            let prediction = whole_path("zip", &record.payload(), &model).unwrap_or_else(|e| panic!("{token:?}: {e}"));
            assert_eq!(prediction.expect("scored").segments.state, None, "{token:?}");
        }
    }
}

/// Payload shapes around the path's own limits: nesting deeper than any stack, the largest
/// record and key read, multi-byte characters across the key limit.
#[test]
fn hostile_payloads_around_the_limits() {
    use model::record::{MAX_KEY_BYTES, MAX_RECORD_BYTES};
    let model = model();
    let good = good_record().payload();
    let with_extra = |extra: &str| {
        let mut record = good_record();
        record.extra = Some(extra.to_owned());
        record.payload()
    };
    let deep = with_extra(&format!(r#""Notes":{}{}"#, "[".repeat(100_000), "]".repeat(100_000)));
    assert!(whole_path("deep", &deep, &model).unwrap().is_err(), "refused, not a stack overflow");
    let shallow = with_extra(&format!(r#""Notes":{}{}"#, "[".repeat(100), "]".repeat(100)));
    assert!(whole_path("shallow", &shallow, &model).unwrap().is_ok(), "unknown keys are ignored");

    // Padded with spaces (JSON whitespace) to exactly the limit, then one byte over.
    for (size, scored) in [(MAX_RECORD_BYTES, true), (MAX_RECORD_BYTES + 1, false)] {
        let mut payload = good.clone();
        payload.splice(1..1, std::iter::repeat_n(b' ', size - good.len()));
        assert_eq!(payload.len(), size);
        assert_eq!(whole_path("big", &payload, &model).unwrap().is_ok(), scored, "{size} bytes");
    }

    // Keys are counted in bytes: a multi-byte character may straddle the limit.
    for wide in ["é", "€", "𝄞"] {
        for pad in MAX_KEY_BYTES - 4..=MAX_KEY_BYTES {
            let key = format!("{}{wide}", "k".repeat(pad));
            let outcome = whole_path(&key, &good, &model).unwrap();
            assert_eq!(outcome.is_ok(), key.len() <= MAX_KEY_BYTES, "{} bytes", key.len());
        }
    }
    assert!(score_record("none", None, &model, SCORED_AT).unwrap_err().reason.contains("empty"));
}
