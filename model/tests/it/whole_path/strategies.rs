//! The changes generated to a valid record: text with foreign and control characters at every
//! position, ZIP codes with foreign characters, keys moved, doubled or misspelt, and (from
//! `scalars`) numbers, flags and dates.

use model::validate::TEXT_MAX_CHARS;
use model::Field;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use super::mutation::{change, Change, Mutation};
use super::record::{
    expect_with, insert_at, nasty_or_control, number, raw, text, zip, Expect, Json, STATES,
};
use super::scalars::{date_mutation, flag_mutation, numeric_mutation};

/// Names, Location, Company.
pub(super) fn text_mutation(field: Field) -> BoxedStrategy<Mutation> {
    let required = field == Field::Names;
    let bases = vec![
        "Cameron Williams",
        "Zoë Ñúñez-李 👍",
        "10265 Elizabeth Mission Barkerburgh, AK 89518",
        "e\u{301}",
    ];
    let insertions = (
        prop::sample::select(bases),
        prop::collection::vec((nasty_or_control(), any::<Index>()), 1..=3),
    )
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
        prop::sample::select(vec![
            1,
            TEXT_MAX_CHARS - 1,
            TEXT_MAX_CHARS,
            TEXT_MAX_CHARS + 1,
            20 * TEXT_MAX_CHARS,
        ]),
        any::<bool>(),
    )
        .prop_map(move |(c, n, padded)| {
            let value = c.repeat(n);
            let value = if padded {
                format!("  {value}\u{3000}")
            } else {
                value
            };
            change(
                field,
                text(value),
                if n <= TEXT_MAX_CHARS {
                    Expect::Scored
                } else {
                    Expect::Rejected
                },
            )
        });
    // "é" as e + combining acute is two characters: the limit counts characters, not graphemes.
    let combining = prop::sample::select(vec![TEXT_MAX_CHARS / 2, TEXT_MAX_CHARS / 2 + 1])
        .prop_map(move |n| {
            let expect = if 2 * n <= TEXT_MAX_CHARS {
                Expect::Scored
            } else {
                Expect::Rejected
            };
            change(field, text("e\u{301}".repeat(n)), expect)
        });
    let empty = if required {
        Expect::Rejected
    } else {
        Expect::Scored
    };
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
        change(
            field,
            Json::Raw(b"\"\xed\xa0\x80\"".to_vec()),
            Expect::Rejected,
        ),
        change(field, raw("\"unterminated"), Expect::Rejected),
    ]);
    if field == Field::Location {
        prop_oneof![4 => insertions, 1 => lengths, 1 => combining, 2 => others, 4 => zip_mutation()]
            .boxed()
    } else {
        prop_oneof![4 => insertions, 1 => lengths, 1 => combining, 2 => others].boxed()
    }
}

/// US addresses whose ZIP gets a foreign character at one of its positions (inserted or in
/// place of a digit): the segmenter reads the ZIP byte by byte and must not panic, nor see a state.
pub(super) fn zip_mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::sample::select(STATES.to_vec()),
        zip(),
        nasty_or_control(),
        any::<Index>(),
        any::<bool>(),
    )
        .prop_map(|(state, zip, inserted, at, replace)| {
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
            Mutation {
                state: segment,
                ..change(Field::Location, text(address), expect)
            }
        })
}

/// Changes to the object rather than to a value: unknown, moved, duplicated, misspelt keys.
pub(super) fn key_mutation() -> BoxedStrategy<Mutation> {
    let changes = vec![
        Change::UnknownKeysBeside,
        Change::MovedLast,
        Change::Duplicated,
        Change::Misspelt,
    ];
    (
        prop::sample::select(Field::ALL.to_vec()),
        prop::sample::select(changes),
    )
        // The expectation depends on the record: `Mutation::apply` decides it.
        .prop_map(|(field, change)| Mutation {
            field,
            change,
            expect: Expect::Either,
            state: None,
        })
        .boxed()
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
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
