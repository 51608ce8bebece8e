//! librdkafka properties kept out of the command line: the `--kafka-properties FILE` format (the
//! Java client's `.properties`, which Kafka users already write), which keys are secrets, and how
//! they are shown.
//!
//! The format follows `java.util.Properties.load`: `key=value`, `key: value` or `key value`;
//! lines starting with `#` or `!` are comments; a line ending in an odd number of backslashes
//! continues on the next (whose leading whitespace is dropped); escapes `\t \n \r \f \uXXXX`, and
//! a backslash before any other character stands for that character (`\\ \= \: \# \ `). Files are
//! read as UTF-8 (as Java 9+ resource bundles are), not ISO-8859-1.
//! No maintained crate on crates.io parses exactly this (`java-properties` has had no release
//! since 2020), and the format is small.

use std::fmt;
use std::path::{Path, PathBuf};

/// A file that is not valid `.properties` text, with the line to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct SyntaxError {
    /// 1-based line where the faulty property starts.
    pub line: usize,
    pub problem: String,
}

/// Why a properties file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PropertiesError {
    #[error("cannot read the Kafka properties file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Kafka properties file {path} is not valid: {source} (format: one key=value per line, # for comments)")]
    Syntax { path: PathBuf, source: SyntaxError },
}

/// Parses `.properties` text into (key, value) pairs in file order (a repeated key appears twice;
/// the later one wins when applied).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, SyntaxError> {
    let mut properties = Vec::new();
    for (line, logical) in logical_lines(text) {
        let (key, value) = split_key_value(&logical);
        let fail = |problem: String| SyntaxError { line, problem };
        let key = unescape(key).map_err(fail)?;
        let value = unescape(value).map_err(fail)?;
        if key.is_empty() {
            return Err(fail("a value without a key".into()));
        }
        properties.push((key, value));
    }
    Ok(properties)
}

/// Reads and parses a properties file.
pub fn read_file(path: &Path) -> Result<Vec<(String, String)>, PropertiesError> {
    let text = std::fs::read_to_string(path).map_err(|source| PropertiesError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|source| PropertiesError::Syntax {
        path: path.to_owned(),
        source,
    })
}

/// Whether the file can be read by anyone but its owner (group or others), which a file holding
/// passwords must not be.
pub fn readable_by_others(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

/// One property as a line of a `.properties` file, escaped so that `parse` reads it back exactly.
pub fn format_line(key: &str, value: &str) -> String {
    let mut line = String::new();
    escape_into(&mut line, key, true);
    line.push('=');
    escape_into(&mut line, value, false);
    line.push('\n');
    line
}

/// Whether a property's value is a secret: it must not be given on the command line (where other
/// users and shell history see it) and is never shown.
pub fn is_secret_key(key: &str) -> bool {
    const SECRET_KEYS: [&str; 5] = [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
    ];
    let key = key.trim().to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str())
        || ["password", "secret", ".key.pem"]
            .iter()
            .any(|word| key.contains(word))
}

/// Properties for Debug output: secret values shown as `***`.
pub struct Redacted<'a>(pub &'a [(String, String)]);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = if is_secret_key(key) { "***" } else { value };
                (key.as_str(), shown)
            }))
            .finish()
    }
}

const WHITESPACE: [char; 3] = [' ', '\t', '\u{c}'];

/// The logical lines of the text, each with the number of the line it starts on: comments and
/// blank lines dropped, continuations joined, leading whitespace trimmed. Escapes are kept (a
/// backslash that continues a line is removed).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut current: Option<(usize, String)> = None;
    // `\r\n`, `\r` and `\n` all end a line, as in Java.
    let natural = text.split('\n').flat_map(|l| {
        let l = l.strip_suffix('\r').unwrap_or(l);
        l.split('\r')
    });
    for (index, raw) in natural.enumerate() {
        let trimmed = raw.trim_start_matches(WHITESPACE);
        let (number, mut logical) = match current.take() {
            Some(continued) => continued,
            None if trimmed.is_empty() || trimmed.starts_with(['#', '!']) => continue,
            None => (index + 1, String::new()),
        };
        let trailing_backslashes = trimmed.len() - trimmed.trim_end_matches('\\').len();
        if trailing_backslashes % 2 == 1 {
            logical.push_str(&trimmed[..trimmed.len() - 1]);
            current = Some((number, logical));
        } else {
            logical.push_str(trimmed);
            lines.push((number, logical));
        }
    }
    // A backslash on the last line continues into nothing.
    lines.extend(current);
    lines
}

/// Splits a logical line into its (still escaped) key and value, as `Properties.load` does: the
/// key ends at the first unescaped `=`, `:` or whitespace; then whitespace and at most one `=` or
/// `:` are skipped.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut key_end = line.len();
    let mut value_start = line.len();
    let mut has_separator = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if !escaped && (c == '=' || c == ':') {
            (key_end, value_start, has_separator) = (i, i + 1, true);
            break;
        }
        if !escaped && WHITESPACE.contains(&c) {
            (key_end, value_start) = (i, i + 1);
            break;
        }
        escaped = c == '\\' && !escaped;
    }
    let mut rest = &line[value_start..];
    loop {
        rest = rest.trim_start_matches(WHITESPACE);
        match rest.strip_prefix(['=', ':']) {
            Some(after) if !has_separator => {
                has_separator = true;
                rest = after;
            }
            _ => break,
        }
    }
    (&line[..key_end], rest)
}

/// What one (possibly escaped) character of the text stands for.
enum Decoded {
    Char(char),
    /// A `\uXXXX` escape: one UTF-16 code unit, maybe half of a surrogate pair.
    Unit(u16),
    /// A backslash at the very end of the file: continues into nothing.
    Nothing,
}

/// Resolves escapes; a `\u` escape must have four hex digits, and surrogates must pair up.
fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let mut pending_high: Option<u16> = None;
    while let Some(c) = chars.next() {
        let decoded = match (c == '\\').then(|| chars.next()) {
            None => Decoded::Char(c),
            Some(None) => Decoded::Nothing,
            Some(Some('u')) => {
                let digits: String = chars.by_ref().take(4).collect();
                if digits.len() != 4 || !digits.chars().all(|d| d.is_ascii_hexdigit()) {
                    // The digits are not shown: they may be part of a password.
                    return Err("a malformed \\uXXXX escape: it takes four hex digits".into());
                }
                Decoded::Unit(u16::from_str_radix(&digits, 16).expect("four hex digits"))
            }
            Some(Some('t')) => Decoded::Char('\t'),
            Some(Some('n')) => Decoded::Char('\n'),
            Some(Some('r')) => Decoded::Char('\r'),
            Some(Some('f')) => Decoded::Char('\u{c}'),
            Some(Some(other)) => Decoded::Char(other),
        };
        match (pending_high.take(), decoded) {
            (Some(high), Decoded::Unit(low)) if (0xDC00..0xE000).contains(&low) => {
                let code = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                out.push(char::from_u32(code).ok_or_else(unpaired)?);
            }
            (Some(_), _) => return Err(unpaired()),
            (None, Decoded::Unit(unit)) if (0xD800..0xDC00).contains(&unit) => {
                pending_high = Some(unit)
            }
            // A lone low surrogate is no char.
            (None, Decoded::Unit(unit)) => {
                out.push(char::from_u32(unit.into()).ok_or_else(unpaired)?)
            }
            (None, Decoded::Char(c)) => out.push(c),
            (None, Decoded::Nothing) => {}
        }
    }
    match pending_high {
        Some(_) => Err(unpaired()),
        None => Ok(out),
    }
}

fn unpaired() -> String {
    "a \\uXXXX escape is half of a UTF-16 surrogate pair without its other half".into()
}

/// Escapes what `parse` would otherwise read differently: separators and `#`/`!` anywhere (cheap
/// and always safe), whitespace in keys and leading whitespace in values, control characters.
fn escape_into(out: &mut String, text: &str, is_key: bool) {
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' | '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
