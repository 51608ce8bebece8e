//! Valid records of the whole-path tests, as a producer writes them, and their pieces.

use chrono::NaiveDate;
use model::validate::{
    AGE_RANGE, NUM_SITES_MAX, ONBOARD_YEAR_RANGE, TOTAL_PURCHASE_MAX, YEARS_MAX,
};
use model::Field;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Characters that break code assuming one byte per character, or that hide in text: 2-, 3- and
/// 4-byte characters, combining marks, zero-width and bidirectional controls, emoji sequences.
/// None is a control character or whitespace, so validation keeps them all.
pub(super) const NASTY: [&str; 14] = [
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
pub(super) const CONTROLS: [&str; 8] = [
    "\0", "\u{1}", "\u{1b}", "\u{7f}", "\u{9f}", "\t", "\n", "\u{85}",
];

/// Whether validation keeps text with `inserted` added inside: any control character that is
/// not whitespace is refused; whitespace controls are refused inside and trimmed at the ends.
pub(super) fn expect_with(inserted: &str) -> Expect {
    if inserted
        .chars()
        .any(|c| c.is_control() && !c.is_whitespace())
    {
        Expect::Rejected
    } else if inserted.chars().any(char::is_control) {
        Expect::Either
    } else {
        Expect::Scored
    }
}

pub(super) fn insert_at(base: &str, char_index: usize, inserted: &str) -> String {
    let at = base
        .char_indices()
        .nth(char_index)
        .map_or(base.len(), |(i, _)| i);
    let mut out = base.to_owned();
    out.insert_str(at, inserted);
    out
}

pub(super) fn nasty_or_control() -> impl Strategy<Value = &'static str> {
    prop_oneof![5 => prop::sample::select(NASTY.to_vec()), 1 => prop::sample::select(CONTROLS.to_vec())]
}

/// One field's value as the producer writes it.
#[derive(Debug, Clone)]
pub(super) enum Json {
    Absent,
    Value(Value),
    /// What `Value` cannot hold: out-of-range numbers, NaN, bad escapes, invalid UTF-8.
    Raw(Vec<u8>),
}

pub(super) fn text(s: impl Into<String>) -> Json {
    Json::Value(Value::String(s.into()))
}

pub(super) fn number(n: f64) -> Json {
    Json::Value(json!(n))
}

pub(super) fn raw(s: &str) -> Json {
    Json::Raw(s.as_bytes().to_vec())
}

/// What a record must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    Scored,
    Rejected,
    /// Either is right: the value is ambiguous (see where it is used).
    Either,
}

#[derive(Debug, Clone)]
pub(super) struct Record {
    /// Every field once, in the order the producer writes them.
    pub(super) fields: Vec<(Field, Json)>,
    /// Members appended as they are: unknown, duplicated or misspelt keys.
    pub(super) extra: Option<String>,
    /// The US state the address segment must show, when the generator knows it.
    pub(super) state: Option<Option<String>>,
}

impl Record {
    pub(super) fn set(&mut self, field: Field, value: Json) {
        let slot = self
            .fields
            .iter_mut()
            .find(|(f, _)| *f == field)
            .expect("every field has a slot");
        slot.1 = value;
    }

    pub(super) fn get(&self, field: Field) -> &Json {
        &self
            .fields
            .iter()
            .find(|(f, _)| *f == field)
            .expect("every field has a slot")
            .1
    }

    /// The JSON object, every value written by serde_json (or raw, when JSON cannot hold it).
    pub(super) fn payload(&self) -> Vec<u8> {
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

/// A valid record's pieces, all within the limits of `model::validate`.
pub(super) fn valid_record() -> impl Strategy<Value = Record> {
    let names = prop::sample::select(vec![
        "Cameron Williams",
        "Zoë Ñúñez",
        "李小龍",
        "Ægir Þórsson",
        "O'Brien-Smith",
        "Αλέξανδρος",
        "محمد علي",
        "A",
    ]);
    let companies = prop::sample::select(vec![
        "Harvey LLC",
        "Müller & Söhne GmbH",
        "株式会社テスト",
        "",
        "X",
    ]);
    let flag = prop_oneof![
        Just(number(0.0)),
        Just(number(1.0)),
        Just(Json::Value(json!(true))),
        Just(text("no"))
    ];
    let churn = prop_oneof![
        Just(Json::Absent),
        Just(number(0.0)),
        Just(number(1.0)),
        Just(text("yes"))
    ];
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
        .prop_map(
            |(
                name,
                age,
                purchase,
                manager,
                years,
                sites,
                date,
                (location, state),
                company,
                churn,
                order,
            )| {
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
                Record {
                    fields,
                    extra: None,
                    state: Some(state),
                }
            },
        )
}

/// A number within `[low, high]`, as a JSON number or as a string (producers send both).
pub(super) fn loose_number(low: f64, high: f64) -> impl Strategy<Value = Json> {
    let value = prop_oneof![
        ((low * 100.0) as i64..=(high * 100.0) as i64).prop_map(|cents| cents as f64 / 100.0),
        low..=high,
    ];
    (value, any::<bool>()).prop_map(|(v, as_text)| {
        if as_text {
            text(v.to_string())
        } else {
            number(v)
        }
    })
}

pub(super) const STATES: [&str; 6] = ["AK", "IL", "CA", "NY", "DC", "WY"];

/// An address and the state segment it must give.
pub(super) fn address() -> impl Strategy<Value = (String, Option<String>)> {
    let us = (1u32..99_999, prop::sample::select(STATES.to_vec()), zip()).prop_map(
        |(number, state, zip)| {
            (
                format!("{number} Elizabeth Mission Barkerburgh, {state} {zip}"),
                Some(state.to_owned()),
            )
        },
    );
    prop_oneof![
        us,
        Just(("Rue de Rivoli, Paris".to_owned(), None)),
        Just(("Unit 0789 Box 0734 DPO AP 91200".to_owned(), None)),
        Just(("Straße des 17. Juni 135, 10623 Berlin".to_owned(), None)),
        Just((String::new(), None)),
    ]
}

/// "NNNNN" or "NNNNN-NNNN".
pub(super) fn zip() -> impl Strategy<Value = String> {
    (0u32..100_000, prop::option::of(0u32..10_000)).prop_map(|(zip, plus4)| match plus4 {
        Some(p) => format!("{zip:05}-{p:04}"),
        None => format!("{zip:05}"),
    })
}

/// A real date in the allowed years, written in an accepted shape (space or T separator, with or
/// without seconds, with or without leading zeros, padded).
pub(super) fn accepted_date() -> impl Strategy<Value = String> {
    let (first, last) = ONBOARD_YEAR_RANGE;
    let year = prop_oneof![Just(first), Just(last), first..=last];
    (
        year,
        1u32..=12,
        1u32..=31,
        0u32..24,
        0u32..60,
        0u32..60,
        any::<[bool; 5]>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_filter_map(
            "a real calendar day",
            |(y, m, d, h, min, s, pad, t, seconds, padded)| {
                NaiveDate::from_ymd_opt(y, m, d)?;
                let part = |value: u32, pad: bool| {
                    if pad {
                        format!("{value:02}")
                    } else {
                        value.to_string()
                    }
                };
                let mut text = format!(
                    "{y}-{}-{}{}{}:{}",
                    part(m, pad[0]),
                    part(d, pad[1]),
                    if t { 'T' } else { ' ' },
                    part(h, pad[2]),
                    part(min, pad[3])
                );
                if seconds {
                    text += &format!(":{}", part(s, pad[4]));
                }
                if padded {
                    text = format!(" {text}\u{a0}");
                }
                Some(text)
            },
        )
}

/// The fixed good record of the exhaustive tests, with multi-byte text so that character
/// boundaries and byte offsets differ.
pub(super) fn good_record() -> Record {
    Record {
        fields: vec![
            (Field::Names, text("Zoë Ñúñez-李 👍")),
            (Field::Age, number((AGE_RANGE.0 + AGE_RANGE.1) / 2.0)),
            (Field::TotalPurchase, number(TOTAL_PURCHASE_MAX / 1e5)),
            (Field::AccountManager, number(1.0)),
            (Field::Years, number(YEARS_MAX / 20.0)),
            (Field::NumSites, number(f64::from(NUM_SITES_MAX / 10_000))),
            (
                Field::OnboardDate,
                text(format!("{}-08-30 07:00:40", ONBOARD_YEAR_RANGE.0 + 63)),
            ),
            (
                Field::Location,
                text("10265 Élizabeth Mission Barkerburgh, AK 89518"),
            ),
            (Field::Company, text("Müller & Söhne €")),
            (Field::Churn, number(0.0)),
        ],
        extra: None,
        state: Some(Some("AK".into())),
    }
}
