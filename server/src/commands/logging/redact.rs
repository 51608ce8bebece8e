//! Secrets taken out of log text, whatever logged them: a library's error message, a Debug
//! print, a URL. The last line of defence — the code itself does not log secrets.
//!
//! What is replaced by `***`: the value after a secret-looking key (`password=x`, `secret: x`,
//! `token=x`, `sasl.password=x`, `"password":"x"`, `("sasl.password", "x")`), the token after
//! `Bearer`, the hex of a `churn_<hex>` API token, and the password in a URL's `user:pass@`.
//! Only ASCII delimiters end a value, so cuts always fall on character boundaries.
//! `redact_json_lines` does the same to JSON log lines value by value, so they stay JSON.

use std::borrow::Cow;
use std::ops::Range;

/// Words that make a key secret-looking (lower case; matched anywhere in the key).
/// `key.pem` and `private_key`: librdkafka's `ssl.key.pem` holds a private key inline.
const SECRET_WORDS: [&str; 8] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "key.pem",
    "private_key",
];
/// The fewest hex digits after `churn_` taken for an API token (shorter is a name like `churn_ab`).
const MIN_TOKEN_HEX: usize = 16;
const MASK: &str = "***";

/// The text with every secret-looking value replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    keyed_values(bytes, &mut spans);
    bearer_tokens(bytes, &mut spans);
    api_tokens(bytes, &mut spans);
    url_passwords(bytes, &mut spans);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_by_key(|s| s.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in spans {
        // A span overlapping the previous one extends its mask.
        if span.start >= at {
            out.push_str(&text[at..span.start]);
            out.push_str(MASK);
        }
        at = at.max(span.end);
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Whether a key (a field name, a property name) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// JSON lines with every secret masked: the value of a secret-looking key becomes `"***"` and
/// every string is redacted as text. Masking in the text itself could leave `{"token":***}`,
/// which a log shipper would reject. A line that is not JSON is redacted as text.
pub fn redact_json_lines(text: &str) -> Cow<'_, str> {
    if !text.contains('{') {
        return redact(text);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(mut value) => {
                redact_json_value(&mut value);
                out.push_str(&value.to_string());
                out.push_str(&line[body.len()..]);
            }
            Err(_) => out.push_str(&redact(line)),
        }
    }
    Cow::Owned(out)
}

fn redact_json_value(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) => {
            if let Cow::Owned(redacted) = redact(text) {
                *text = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json_value),
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                let empty = matches!(field, Value::Null) || field.as_str() == Some("");
                if is_secret_key(key) && !empty {
                    *field = Value::String(MASK.to_owned());
                } else {
                    redact_json_value(field);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Whitespace and ANSI colour codes (the log writer colours field names and `=` on a terminal).
fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    loop {
        match bytes.get(i) {
            Some(b' ' | b'\t') => i += 1,
            Some(0x1b) if bytes.get(i + 1) == Some(&b'[') => {
                i += 2;
                while bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b';')
                {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'm') {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// Where a value starting at `i` ends: a quoted one at its closing quote (backslash escapes
/// skipped), a bare one at whitespace or punctuation that ends values in logs, URLs and JSON.
/// Returns the span to mask.
fn value_span(bytes: &[u8], i: usize) -> Option<Range<usize>> {
    // JSON inside a quoted string: `\"value\"`.
    if let (Some(b'\\'), Some(quote @ (b'"' | b'\''))) = (bytes.get(i), bytes.get(i + 1)) {
        let closing = [b'\\', *quote];
        let end = bytes[i + 2..]
            .windows(2)
            .position(|w| w == closing)
            .map_or(bytes.len(), |p| i + 2 + p);
        return (end > i + 2).then_some(i + 2..end);
    }
    match bytes.get(i)? {
        quote @ (b'"' | b'\'') => {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != *quote {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(bytes.len());
            (end > i + 1).then_some(i + 1..end)
        }
        _ => {
            let mut j = i;
            while j < bytes.len()
                && !matches!(
                    bytes[j],
                    b' ' | b'\t'
                        | b'\n'
                        | b'\r'
                        | b','
                        | b';'
                        | b'&'
                        | b'}'
                        | b')'
                        | b']'
                        | b'"'
                        | b'\''
                        | b'<'
                        | 0x1b
                )
            {
                j += 1;
            }
            (j > i).then_some(i..j)
        }
    }
}

/// `key=value`, `key: value`, `"key":"value"` and Debug's `("key", "value")` with a
/// secret-looking key.
fn keyed_values(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    let mut i = 0;
    while i < bytes.len() {
        if !is_key_byte(bytes[i]) || (i > 0 && is_key_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_key_byte(bytes[i]) {
            i += 1;
        }
        if !is_secret_key(&String::from_utf8_lossy(&bytes[start..i])) {
            continue;
        }
        let quote = start
            .checked_sub(1)
            .map(|q| bytes[q])
            .filter(|q| matches!(q, b'"' | b'\''));
        let mut j = i;
        if let Some(q) = quote {
            // The key's closing quote, escaped too when the JSON sits inside a quoted string.
            if bytes.get(j) == Some(&q) {
                j += 1;
            } else if bytes.get(j) == Some(&b'\\') && bytes.get(j + 1) == Some(&q) {
                j += 2;
            }
        }
        j = skip_blanks(bytes, j);
        let separator = bytes.get(j).copied();
        let tuple = separator == Some(b',') && quote.is_some();
        if !matches!(separator, Some(b'=' | b':')) && !tuple {
            continue;
        }
        j = skip_blanks(bytes, j + 1);
        // In a tuple the value is quoted; `"password", 3` is a list of things, not a secret.
        if tuple && !matches!(bytes.get(j), Some(b'"' | b'\'')) {
            continue;
        }
        if let Some(span) = value_span(bytes, j) {
            i = span.end;
            spans.push(span);
        }
    }
}

/// Lower-case ASCII `word` at `i`, not inside a longer word.
fn word_at(bytes: &[u8], i: usize, word: &str) -> bool {
    bytes.len() >= i + word.len()
        && bytes[i..i + word.len()].eq_ignore_ascii_case(word.as_bytes())
        && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
}

/// `Bearer <token>`, in any case.
fn bearer_tokens(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    for i in 0..bytes.len() {
        if !word_at(bytes, i, "bearer") {
            continue;
        }
        let after = i + "bearer".len();
        let j = skip_blanks(bytes, after);
        if j > after {
            spans.extend(value_span(bytes, j).filter(|s| s.start == j));
        }
    }
}

/// `churn_<hex>`: the web app's API tokens.
fn api_tokens(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    for i in 0..bytes.len() {
        if !word_at(bytes, i, "churn_") || (i > 0 && bytes[i - 1] == b'_') {
            continue;
        }
        let start = i + "churn_".len();
        let mut end = start;
        while end < bytes.len() && bytes[end].is_ascii_hexdigit() {
            end += 1;
        }
        let whole_word = end == bytes.len() || !is_key_byte(bytes[end]) || bytes[end] == b'.';
        if end - start >= MIN_TOKEN_HEX && whole_word {
            spans.push(start..end);
        }
    }
}

/// `scheme://user:password@host`: the password.
fn url_passwords(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    for i in 0..bytes.len().saturating_sub(3) {
        if &bytes[i..i + 3] != b"://" {
            continue;
        }
        let authority = i + 3;
        let mut end = authority;
        while end < bytes.len()
            && !matches!(
                bytes[end],
                b'/' | b'?' | b'#' | b'@' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'<' | b'>'
            )
        {
            end += 1;
        }
        if bytes.get(end) != Some(&b'@') {
            continue;
        }
        if let Some(colon) = bytes[authority..end].iter().position(|b| *b == b':') {
            let start = authority + colon + 1;
            if end > start {
                spans.push(start..end);
            }
        }
    }
}

#[cfg(test)]
mod tests;
