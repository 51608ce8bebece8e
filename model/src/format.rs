//! Numbers as people read them, the same wherever they are shown (the browser, the server, tests).

/// A share (0.253) as a percentage with `decimals` decimals: "25.3%" for 1.
pub fn percent(share: f64, decimals: usize) -> String {
    let mut text = percentage_points(share, decimals);
    text.push('%');
    text
}

/// A share in percentage points without the sign ("25.3"), for what wants a number, such as
/// `aria-valuenow`.
pub fn percentage_points(share: f64, decimals: usize) -> String {
    format!("{:.*}", decimals, share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_read_as_percentages() {
        assert_eq!(percent(0.253, 1), "25.3%");
        assert_eq!(percent(0.2549, 0), "25%");
        assert_eq!(percent(1.0, 0), "100%");
        assert_eq!(percentage_points(0.5, 0), "50");
        assert_eq!(percent(f64::NAN, 1), "NaN%");
    }
}
