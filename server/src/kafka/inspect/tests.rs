//! Rendering hostile records: never a panic, never invalid JSON, never a lost byte.

use serde_json::{json, Value};

use super::render::{bytes, dead_letter, headers, timestamp, value};

#[test]
fn text_stays_text_and_other_bytes_are_base64_under_a_marker() {
    assert_eq!(bytes(b"r-17"), json!("r-17"));
    assert_eq!(bytes(b""), json!(""));
    assert_eq!(bytes(&[0xff, 0x00, 0xfe]), json!({"base64": "/wD+"}));
    // Invalid UTF-8 in the middle of otherwise readable text is still not text.
    assert_eq!(bytes(b"ab\xc3"), json!({"base64": "YWLD"}));
    // Control characters are text: JSON escapes them.
    let line = serde_json::to_string(&bytes(b"a\nb\x00\x1b[31m")).unwrap();
    assert!(!line.contains('\n') && line.contains("\\u0000"), "{line}");
}

#[test]
fn json_values_stay_json_and_anything_else_is_kept() {
    assert_eq!(value(br#"{"Age": 42}"#), json!({"Age": 42}));
    assert_eq!(value(b"42"), json!(42));
    assert_eq!(value(b"not json"), json!("not json"));
    assert_eq!(
        value(b"{\"a\":"),
        json!("{\"a\":"),
        "a cut JSON value stays as text"
    );
    assert_eq!(value(&[0x80; 3]), json!({"base64": "gICA"}));
    // Nesting past serde_json's limit: a string, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(value(deep.as_bytes()), Value::String(deep.clone()));
    // A huge value is kept whole.
    let huge = "x".repeat(4 << 20);
    assert_eq!(value(huge.as_bytes()).as_str().map(str::len), Some(4 << 20));
}

#[test]
fn timestamps_are_rfc3339_and_nonsense_is_null() {
    assert_eq!(timestamp(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
    assert_eq!(
        timestamp(1_767_225_600_123).as_deref(),
        Some("2026-01-01T00:00:00.123Z")
    );
    assert_eq!(timestamp(i64::MAX), None);
    assert_eq!(timestamp(i64::MIN), None);
    assert!(timestamp(-1).is_some(), "before 1970 is still a time");
}

#[test]
fn headers_keep_every_value_repeats_included() {
    let rendered = headers([
        ("a", Some(&b"1"[..])),
        ("bin", Some(&[0xff][..])),
        ("none", None),
        ("a", Some(&b"2"[..])),
        ("a", Some(&b"3"[..])),
        ("", Some(&b""[..])),
    ]);
    assert_eq!(
        rendered,
        json!({"a": ["1", "2", "3"], "bin": {"base64": "/w=="}, "none": null, "": ""})
    );
    assert_eq!(headers([]), json!({}));
}

#[test]
fn dead_letters_show_their_reason_and_errors_readably() {
    let h = headers([
        (
            "dlq.reason",
            Some(&b"Age: must be between 16 and 110 years, got -5"[..]),
        ),
        ("dlq.source", Some(&b"costumerchurn-0-12"[..])),
        (
            "dlq.errors",
            Some(&br#"[{"field":"Age","message":"must be"}]"#[..]),
        ),
        ("dlq.original_size", Some(&b"70000"[..])),
    ]);
    assert_eq!(
        dead_letter(&h).unwrap(),
        json!({
            "reason": "Age: must be between 16 and 110 years, got -5",
            "source": "costumerchurn-0-12",
            "errors": [{"field": "Age", "message": "must be"}],
            "original_size": 70000
        })
    );
    // Hostile dead-letter headers: shown as they are, not dropped, no panic.
    let odd = headers([
        ("dlq.reason", Some(&b"x"[..])),
        ("dlq.errors", Some(&b"[not json"[..])),
        ("dlq.original_size", Some(&b"-1e9"[..])),
    ]);
    assert_eq!(
        dead_letter(&odd).unwrap(),
        json!({"reason": "x", "errors": "[not json", "original_size": "-1e9"})
    );
    // A reason that is not text, or no reason: not a dead letter of ours.
    assert_eq!(
        dead_letter(&headers([("dlq.reason", Some(&[0xff][..]))])),
        None
    );
    assert_eq!(
        dead_letter(&headers([("dlq.source", Some(&b"s"[..]))])),
        None
    );
}

#[test]
fn topics_whose_retention_is_not_the_flags_are_found() {
    use super::topics::{retention_differences, TopicInfo};
    use crate::kafka::Topics;
    let topics = Topics {
        retention: std::time::Duration::from_secs(7 * 86_400),
        ..Topics::default()
    };
    let info = |name: &str, retention_ms: Option<i64>, policy: &str| TopicInfo {
        name: name.into(),
        partitions: vec![],
        records: 0,
        retention_ms,
        cleanup_policy: Some(policy.into()),
    };
    let week = 7 * 86_400_000;
    let existing = [
        info(&topics.input, Some(week), "delete"),
        info(&topics.predictions, Some(-1), "delete"),
        info(&topics.dead_letter, None, "delete"),
        info(&topics.labels, Some(30 * 86_400_000), "compact"),
        info(&topics.stats, Some(week), "compact,delete"),
        info(&topics.models, Some(-1), "compact"),
        info("someone-elses", Some(1), "delete"),
    ];
    let found: Vec<(String, Option<i64>, i64)> = retention_differences(&topics, &existing)
        .into_iter()
        .map(|c| (c.topic, c.before_ms, c.after_ms))
        .collect();
    assert_eq!(
        found,
        [
            (topics.predictions.clone(), Some(-1), week),
            (topics.dead_letter.clone(), None, week),
            (topics.stats.clone(), Some(week), 86_400_000),
        ]
    );
}
