//! One change to a valid record, and what the record must then come to.

use model::Field;

use super::record::{Expect, Json, Record};

/// How one field changes.
#[derive(Debug, Clone)]
pub(super) enum Change {
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
pub(super) struct Mutation {
    pub(super) field: Field,
    pub(super) change: Change,
    pub(super) expect: Expect,
    /// For address mutations: the state segment the prediction must show.
    pub(super) state: Option<Option<String>>,
}

pub(super) fn change(field: Field, value: Json, expect: Expect) -> Mutation {
    Mutation {
        field,
        change: Change::Value(value),
        expect,
        state: None,
    }
}

impl Mutation {
    /// Changes the record; returns the changed field, what to expect and a label to count by.
    pub(super) fn apply(self, record: &mut Record) -> (Field, Expect, &'static str) {
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
                record.extra =
                    Some(r#""Notes":{"deep":[[[["x"]]]],"n":null},"names":"ignored","":1"#.into());
                (Expect::Scored, "(unknown keys)")
            }
            Change::MovedLast => {
                record.set(field, Json::Absent);
                record.extra = current.map(|value| format!(r#""{column}":{value}"#));
                (Expect::Scored, "(key order)")
            }
            Change::Duplicated => {
                record.extra = current
                    .as_ref()
                    .map(|value| format!(r#""{column}":{value}"#));
                (
                    if current.is_some() {
                        Expect::Rejected
                    } else {
                        Expect::Scored
                    },
                    "(duplicate keys)",
                )
            }
            Change::Misspelt => {
                record.set(field, Json::Absent);
                record.extra =
                    current.map(|value| format!(r#""{}":{value}"#, column.to_lowercase()));
                if field == Field::Location {
                    record.state = Some(None);
                }
                (
                    if required {
                        Expect::Rejected
                    } else {
                        Expect::Scored
                    },
                    "(misspelt keys)",
                )
            }
        };
        (field, expect, label)
    }
}
