//! Redaction against the many shapes a secret takes in a log line.

use super::redact;

fn check(input: &str, expected: &str) {
    assert_eq!(redact(input), expected, "redacting {input:?}");
    // Redacting twice changes nothing more.
    assert_eq!(redact(expected), expected, "redacting {expected:?} again");
}

#[test]
fn key_value_pairs_in_every_separator_and_quoting() {
    check("password=hunter2", "password=***");
    check(
        "login failed password=hunter2 user=ann",
        "login failed password=*** user=ann",
    );
    check("password = hunter2", "password = ***");
    check("password: hunter2", "password: ***");
    check("secret=abc, next=1", "secret=***, next=1");
    check("token=abc;x=1", "token=***;x=1");
    check("sasl.password=hunter2", "sasl.password=***");
    check("SASL.PASSWORD=hunter2", "SASL.PASSWORD=***");
    check(
        "ssl.key.password=a ssl.keystore.password=b",
        "ssl.key.password=*** ssl.keystore.password=***",
    );
    check("db_password=x", "db_password=***");
    check("client-secret=x", "client-secret=***");
    check("api_key=x apikey=y", "api_key=*** apikey=***");
    check("password=\"two words\" rest", "password=\"***\" rest");
    check("password='two words' rest", "password='***' rest");
    check(
        "password: \"with \\\" quote\" after",
        "password: \"***\" after",
    );
    check("password=\"never closed", "password=\"***");
}

#[test]
fn json_and_debug_shapes() {
    check(
        r#"{"password":"x","user":"ann"}"#,
        r#"{"password":"***","user":"ann"}"#,
    );
    check(
        r#"{"password": "x y", "n": 1}"#,
        r#"{"password": "***", "n": 1}"#,
    );
    check(r#"{"token":12345}"#, r#"{"token":***}"#);
    check(r#"{"client_secret":"a\"b"}"#, r#"{"client_secret":"***"}"#);
    check(
        r#"body="{\"password\":\"x\",\"user\":\"ann\"}""#,
        r#"body="{\"password\":\"***\",\"user\":\"ann\"}""#,
    );
    check(
        r#"Config { password: "x", user: "ann" }"#,
        r#"Config { password: "***", user: "ann" }"#,
    );
    check(
        r#"properties=[("sasl.username", "ann"), ("sasl.password", "x")]"#,
        r#"properties=[("sasl.username", "ann"), ("sasl.password", "***")]"#,
    );
    check(r#"("password", 3) items"#, r#"("password", 3) items"#);
}

#[test]
fn end_of_line_and_multi_line_events() {
    check("password=x", "password=***");
    check("password=x\nnext line", "password=***\nnext line");
    check("a\r\npassword=x\r\n", "a\r\npassword=***\r\n");
    check("password=", "password=");
    check("password=\n", "password=\n");
}

#[test]
fn unicode_values_and_neighbours() {
    check("password=pässwörd🎉 ok", "password=*** ok");
    check("Kennwort password=秘密 ok", "Kennwort password=*** ok");
    check("ünïcødé secret=x", "ünïcødé secret=***");
    check("password=\"日本語 テキスト\" é", "password=\"***\" é");
}

#[test]
fn bearer_tokens_in_any_case() {
    check(
        "Authorization: Bearer eyJhbGciOi.x.y",
        "Authorization: Bearer ***",
    );
    check(
        "authorization: bearer abc123 then",
        "authorization: bearer *** then",
    );
    check("BEARER  abc", "BEARER  ***");
    check("header=\"Bearer abc\"", "header=\"Bearer ***\"");
    check("the bearer of bad news", "the bearer *** bad news");
    check("bearers abc", "bearers abc");
}

#[test]
fn api_tokens() {
    let token = format!("churn_{}", "0123456789abcdef".repeat(2));
    check(&format!("issued {token} to ann"), "issued churn_*** to ann");
    check(&format!("{token}."), "churn_***.");
    check(&format!("x-api-key: {token}"), "x-api-key: churn_***");
    check(
        "churn_abc churn_model churn_scorer",
        "churn_abc churn_model churn_scorer",
    );
    check(
        "costumerchurn_0123456789abcdef00",
        "costumerchurn_0123456789abcdef00",
    );
    check(
        "churn_0123456789abcdef0123xyz",
        "churn_0123456789abcdef0123xyz",
    );
}

#[test]
fn passwords_in_urls() {
    check(
        "kafka://ann:hunter2@host:9092/x",
        "kafka://ann:***@host:9092/x",
    );
    check(
        "postgres://ann:p%40ss@db/churn?x=1",
        "postgres://ann:***@db/churn?x=1",
    );
    check("https://ann@host/", "https://ann@host/");
    check("https://host:443/path@x", "https://host:443/path@x");
    check(
        "see http://a:b@c and http://d:e@f",
        "see http://a:***@c and http://d:***@f",
    );
}

#[test]
fn ansi_coloured_fields() {
    // What the log formatter writes on a terminal: italic field name, dimmed `=`.
    check(
        "\u{1b}[3mpassword\u{1b}[0m\u{1b}[2m=\u{1b}[0mhunter2 \u{1b}[3muser\u{1b}[0m\u{1b}[2m=\u{1b}[0mann",
        "\u{1b}[3mpassword\u{1b}[0m\u{1b}[2m=\u{1b}[0m*** \u{1b}[3muser\u{1b}[0m\u{1b}[2m=\u{1b}[0mann",
    );
}

#[test]
fn ordinary_lines_are_untouched_and_borrowed() {
    for line in [
        "",
        "scored 1,000 records in 2.1 s",
        "the broker refused our credentials: check sasl.username / sasl.password in data/kafka.properties",
        "put secrets in --kafka-properties FILE",
        "Secrets never on a command line",
        "tokens left: 5",
        "password",
        "=value",
        "a:b c=d",
    ] {
        let out = redact(line);
        assert!(matches!(out, std::borrow::Cow::Borrowed(_)), "{line:?} -> {out:?}");
    }
}
