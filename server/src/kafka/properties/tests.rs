//! The `.properties` parser against the Java format's corners, the secret keys, and redaction.

use super::{format_line, is_secret_key, parse, read_file, readable_by_others, Redacted};

fn pairs(text: &str) -> Vec<(String, String)> {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn one(text: &str) -> (String, String) {
    let mut all = pairs(text);
    assert_eq!(all.len(), 1, "{text:?} gave {all:?}");
    all.remove(0)
}

fn kv(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

#[test]
fn the_three_separators_and_the_whitespace_around_them() {
    for text in [
        "sasl.username=churn",
        "sasl.username = churn",
        "sasl.username:churn",
        "sasl.username :  churn",
        "sasl.username churn",
        "sasl.username\t\tchurn",
        "   sasl.username=churn",
        "\t\u{c} sasl.username   =churn",
    ] {
        assert_eq!(one(text), kv("sasl.username", "churn"), "{text:?}");
    }
}

#[test]
fn only_the_first_separator_splits_and_trailing_whitespace_is_kept() {
    assert_eq!(one("a=b=c"), kv("a", "b=c"));
    assert_eq!(
        one("a==b"),
        kv("a", "=b"),
        "a second = belongs to the value"
    );
    assert_eq!(one("a = = b"), kv("a", "= b"));
    assert_eq!(one("a : b:c"), kv("a", "b:c"));
    assert_eq!(
        one("a b = c"),
        kv("a", "b = c"),
        "whitespace then a non-separator"
    );
    assert_eq!(one("a  =b  "), kv("a", "b  "), "Java keeps trailing spaces");
    assert_eq!(one("key"), kv("key", ""), "a key alone has an empty value");
    assert_eq!(one("key="), kv("key", ""));
    assert_eq!(one("key   "), kv("key", ""));
}

#[test]
fn comments_and_blank_lines_are_skipped_but_not_inside_values() {
    let text =
        "# a comment\n! another\n   # indented comment\n\n   \t\na=b # not a comment\nc=!d\n";
    assert_eq!(
        pairs(text),
        vec![kv("a", "b # not a comment"), kv("c", "!d")]
    );
    assert_eq!(pairs(""), vec![]);
    assert_eq!(pairs("\n\n# only\n"), vec![]);
    // A comment ending in a backslash does not swallow the next line.
    assert_eq!(pairs("# comment \\\nx=1"), vec![kv("x", "1")]);
}

#[test]
fn every_line_ending_ends_a_line() {
    assert_eq!(
        pairs("a=1\r\nb=2\rc=3\nd=4"),
        vec![kv("a", "1"), kv("b", "2"), kv("c", "3"), kv("d", "4")]
    );
    assert_eq!(
        pairs("a=1\r\n\r\n"),
        vec![kv("a", "1")],
        "no \\r left in values"
    );
}

#[test]
fn continuation_lines_join_and_lose_their_leading_whitespace() {
    assert_eq!(
        one("a=one, \\\n    two, \\\n\tthree"),
        kv("a", "one, two, three")
    );
    assert_eq!(one("a=x\\\r\n  y"), kv("a", "xy"));
    assert_eq!(one("multi\\\n  part=key"), kv("multipart", "key"));
    // An even number of backslashes is an escaped backslash, not a continuation.
    assert_eq!(pairs("a=x\\\\\nb=y"), vec![kv("a", "x\\"), kv("b", "y")]);
    assert_eq!(one("a=x\\\\\\\n y"), kv("a", "x\\y"));
    // A continued line may look like a comment: it is still value.
    assert_eq!(one("a=x\\\n# y"), kv("a", "x# y"));
    // A continuation into a blank line ends the value, and one at the end of the file too.
    assert_eq!(pairs("a=x\\\n\nb=y"), vec![kv("a", "x"), kv("b", "y")]);
    assert_eq!(one("a=x\\"), kv("a", "x"));
}

#[test]
fn escapes_resolve_in_keys_and_values() {
    assert_eq!(one(r"a\=b\:c\ d=v"), kv("a=b:c d", "v"));
    assert_eq!(
        one(r"k=tab\there\nnl\rcr\fff"),
        kv("k", "tab\there\nnl\rcr\u{c}ff")
    );
    assert_eq!(one(r"k=back\\slash"), kv("k", "back\\slash"));
    assert_eq!(
        one(r"k=\#\!\q"),
        kv("k", "#!q"),
        "any other escaped char is itself"
    );
    assert_eq!(one(r"k=\ leading"), kv("k", " leading"));
    assert_eq!(one(r"k=caf\u00e9 \u20AC"), kv("k", "café €"));
    assert_eq!(one(r"k=\uD83D\uDE00"), kv("k", "😀"), "a surrogate pair");
    assert_eq!(one("k=pässwörd 🎉"), kv("k", "pässwörd 🎉"), "UTF-8 as is");
    assert_eq!(one(r"\u0041=1"), kv("A", "1"));
}

#[test]
fn malformed_escapes_and_missing_keys_are_errors_naming_the_line() {
    for (text, line) in [
        ("a=1\nk=\\u12", 2),
        ("k=\\u12G4", 1),
        ("k=\\u", 1),
        ("\n\nk=\\uD83D", 3),
        ("k=\\uD83Dx", 1),
        ("k=\\uD83D\\u0041", 1),
        ("k=\\uDE00", 1),
        ("=value", 1),
        ("a=1\n  : value", 2),
        ("a=1\\\n  continued\n=x", 3),
    ] {
        let error = parse(text).expect_err(text);
        assert_eq!(error.line, line, "{text:?}: {error}");
    }
    let error = parse("sasl.password=\\uZZZZsecret")
        .unwrap_err()
        .to_string();
    assert!(
        !error.contains("ZZZZ"),
        "no part of a value in the message: {error}"
    );
}

#[test]
fn a_repeated_key_is_kept_in_order_so_the_last_wins() {
    assert_eq!(pairs("a=1\na=2"), vec![kv("a", "1"), kv("a", "2")]);
}

#[test]
fn formatted_lines_read_back_exactly_whatever_they_hold() {
    let hostile = [
        "plain",
        "",
        " leading and trailing ",
        "=:#!\\",
        "\\",
        "ends with backslash\\",
        "multi\nline\r\ntext\u{c}\t",
        "# looks like a comment",
        "! too",
        "héllo wörld 😀 \u{7f}\u{1}",
        "a=b:c d",
        "\\u0041 literal",
    ];
    for key in ["k", "sasl.password", "odd key=:#"] {
        for value in hostile {
            let line = format_line(key, value);
            assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
            assert_eq!(one(&line), kv(key, value), "{line:?}");
        }
    }
}

#[test]
fn secret_keys_are_recognised_in_any_case_and_others_are_not() {
    for key in [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
        "SASL.PASSWORD",
        " sasl.password ",
        "ssl.truststore.password",
        "my.custom.secret.thing",
        "some.key.pem",
        "Password",
    ] {
        assert!(is_secret_key(key), "{key}");
    }
    for key in [
        "sasl.username",
        "sasl.mechanism",
        "security.protocol",
        "ssl.ca.location",
        "ssl.certificate.pem",
        "ssl.key.location",
        "bootstrap.servers",
        "linger.ms",
    ] {
        assert!(!is_secret_key(key), "{key}");
    }
}

#[test]
fn redacted_debug_hides_secret_values_only() {
    let properties = vec![
        kv("sasl.username", "churn"),
        kv("sasl.password", "hunter2"),
        kv("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
        kv("Some.Secret", "s3"),
    ];
    let shown = format!("{:?}", Redacted(&properties));
    assert!(shown.contains("churn"), "{shown}");
    for secret in ["hunter2", "BEGIN PRIVATE", "s3\""] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert_eq!(shown.matches("***").count(), 3, "{shown}");
}

#[test]
fn files_are_read_and_their_permissions_judged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kafka.properties");
    std::fs::write(&path, "sasl.username=churn\nsasl.password=x\\\n  y\n").unwrap();
    assert_eq!(
        read_file(&path).unwrap(),
        vec![kv("sasl.username", "churn"), kv("sasl.password", "xy")]
    );
    for (mode, open) in [
        (0o600, false),
        (0o400, false),
        (0o640, true),
        (0o604, true),
        (0o700, false),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(readable_by_others(&path).unwrap(), open, "{mode:o}");
    }
    let missing = read_file(&dir.path().join("nope")).unwrap_err().to_string();
    assert!(missing.contains("nope"), "{missing}");
    std::fs::write(&path, "ok=1\nbad=\\u00").unwrap();
    let bad = read_file(&path).unwrap_err().to_string();
    assert!(
        bad.contains("line 2") && bad.contains("kafka.properties"),
        "{bad}"
    );
}
