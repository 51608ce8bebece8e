//! Value parsers for command-line numbers: nonsense (negative, zero or NaN durations and rates)
//! is refused by the argument parser with a message that says what is accepted, before anything
//! starts — not by a panic deep inside (`Duration::from_secs_f64(-1.0)` panics).

/// Longest duration any flag accepts: a year. Beyond it `Duration` arithmetic overflows.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
/// Shortest duration: a millisecond, the finest the pipeline's clocks count in.
const MIN_SECONDS: f64 = 0.001;
/// Slowest replay rate besides 0: one record a day (a slower one is a period past `MAX_SECONDS`
/// and made `Duration::from_secs_f64` panic).
const MIN_RATE: f64 = 1.0 / 86_400.0;

/// A number as the user wrote it, for messages: `1e300` stays short rather than 301 digits.
fn shown(value: f64) -> String {
    if value != 0.0 && !(1e-6..1e9).contains(&value.abs()) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

fn number(text: &str) -> Result<f64, String> {
    let quoted = || format!("{:?}", model::record::truncate_utf8(text, 40));
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{} is not a number", quoted()))?;
    if !value.is_finite() {
        return Err(format!("{} is not a finite number", quoted()));
    }
    Ok(value)
}

/// Seconds, more than zero: window lengths, timeouts.
pub fn positive_seconds(text: &str) -> Result<f64, String> {
    match number(text)? {
        s if (MIN_SECONDS..=MAX_SECONDS).contains(&s) => Ok(s),
        s => Err(format!(
            "must be between {MIN_SECONDS} and {MAX_SECONDS} seconds, got {}",
            shown(s)
        )),
    }
}

/// Seconds, zero allowed: allowed lateness.
pub fn non_negative_seconds(text: &str) -> Result<f64, String> {
    match number(text)? {
        s if (0.0..=MAX_SECONDS).contains(&s) => Ok(s),
        s => Err(format!(
            "must be between 0 and {MAX_SECONDS} seconds, got {}",
            shown(s)
        )),
    }
}

/// Records per second; 0 means as fast as possible.
pub fn rate(text: &str) -> Result<f64, String> {
    match number(text)? {
        r if r == 0.0 || r >= MIN_RATE => Ok(r),
        r => Err(format!("must be 0 (as fast as possible) or at least {MIN_RATE:.1e} records per second (one a day), got {}", shown(r))),
    }
}

/// A share between 0 and 1.
pub fn share(text: &str) -> Result<f64, String> {
    match number(text)? {
        s if (0.0..=1.0).contains(&s) => Ok(s),
        s => Err(format!("must be a share between 0 and 1, got {}", shown(s))),
    }
}

/// A non-negative, finite weight (the L2 penalty).
pub fn non_negative(text: &str) -> Result<f64, String> {
    match number(text)? {
        w if w >= 0.0 => Ok(w),
        w => Err(format!("must be 0 or more, got {}", shown(w))),
    }
}

/// A record-id prefix: short enough that ids stay far below `model::record::MAX_KEY_BYTES`.
pub fn id_prefix(text: &str) -> Result<String, String> {
    const MAX: usize = 64;
    if text.is_empty() || text.len() > MAX || text.chars().any(char::is_control) {
        return Err(format!(
            "must be 1 to {MAX} bytes without control characters"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_refused_with_a_message_and_sense_accepted() {
        for bad in ["-1", "0", "NaN", "nan", "inf", "-inf", "abc", "", "1e300"] {
            let error = positive_seconds(bad).unwrap_err();
            assert!(!error.is_empty(), "{bad}");
        }
        assert_eq!(positive_seconds(" 2.5 "), Ok(2.5));
        assert!(
            positive_seconds("1e300")
                .unwrap_err()
                .ends_with("got 1e300"),
            "short, as written"
        );
        assert!(positive_seconds(&"9".repeat(400)).unwrap_err().len() < 120);
        assert_eq!(non_negative_seconds("0"), Ok(0.0));
        assert!(non_negative_seconds("-0.1").is_err());
        assert_eq!(rate("0"), Ok(0.0));
        assert!(rate("-5").unwrap_err().contains("as fast as possible"));
        assert!(rate("NaN").is_err());
        assert!(rate("1e-300").is_err(), "a period past any Duration");
        assert!(
            positive_seconds("1e-9").is_err(),
            "rounds to no time at all"
        );
        assert!(share("1.5").is_err());
        assert!(non_negative("-1").is_err());
        assert!(id_prefix(&"x".repeat(65)).is_err());
        assert!(id_prefix("run-7").is_ok());
    }
}
