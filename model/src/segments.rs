//! Customer segments for stream analytics: who the at-risk customers are, in groups a
//! customer-success team acts on.

use serde::{Deserialize, Serialize};

use crate::features::tenure_years;
use crate::schema::Customer;

const US_STATES: [&str; 51] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY",
];

/// Tenure buckets, as `Segments::tenure` names them.
pub const TENURE_BUCKETS: [&str; 4] = ["<2y", "2-5y", "5-8y", "8y+"];
/// Number-of-sites buckets, as `Segments::sites` names them.
pub const SITES_BUCKETS: [&str; 4] = ["0-6", "7-9", "10-12", "13+"];

/// The segments one customer belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Segments {
    pub account_manager: bool,
    /// "<2y", "2-5y", "5-8y", "8y+".
    pub tenure: String,
    /// "0-6", "7-9", "10-12", "13+".
    pub sites: String,
    /// Two-letter US state parsed from the address ("..., AK 89518"), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl Segments {
    pub fn of(customer: &Customer, reference_date: chrono::NaiveDateTime) -> Self {
        let tenure = tenure_years(customer.onboard_date, reference_date);
        Segments {
            account_manager: customer.account_manager,
            tenure: TENURE_BUCKETS[match tenure {
                t if t < 2.0 => 0,
                t if t < 5.0 => 1,
                t if t < 8.0 => 2,
                _ => 3,
            }]
            .into(),
            sites: SITES_BUCKETS[match customer.num_sites {
                0..=6 => 0,
                7..=9 => 1,
                10..=12 => 2,
                _ => 3,
            }]
            .into(),
            state: us_state(&customer.location),
        }
    }

    /// Whether every segment is one this code makes. Predictions come off a topic anyone with
    /// write access can write to: an unknown value would become a map key in every window (a
    /// megabyte "tenure" made the window too large to publish, forever).
    /// Empty is known too: a prediction without segments (another producer's) reads as the default.
    pub fn is_known(&self) -> bool {
        let known = |value: &str, buckets: &[&str]| value.is_empty() || buckets.contains(&value);
        known(&self.tenure, &TENURE_BUCKETS)
            && known(&self.sites, &SITES_BUCKETS)
            && self
                .state
                .as_deref()
                .is_none_or(|state| US_STATES.contains(&state))
    }

    /// Segment keys this customer counts in, e.g. "all", "account_manager=yes", "state=AK".
    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![
            "all".to_owned(),
            format!(
                "account_manager={}",
                if self.account_manager { "yes" } else { "no" }
            ),
            format!("tenure={}", self.tenure),
            format!("sites={}", self.sites),
        ];
        if let Some(state) = &self.state {
            keys.push(format!("state={state}"));
        }
        keys
    }
}

/// The state of a US postal address: a known two-letter code followed by a ZIP at the end.
pub fn us_state(address: &str) -> Option<String> {
    let mut tokens = address
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .rev();
    let zip = tokens.next()?;
    // Byte-wise: a 10-byte token with a multi-byte character ("123€abcd") has no char boundary
    // at byte 5, so slicing the text there would panic.
    let digits = |bytes: &[u8]| bytes.iter().all(u8::is_ascii_digit);
    let zip = zip.as_bytes();
    let zip_ok = match zip.len() {
        5 => digits(zip),
        10 => digits(&zip[..5]) && zip[5] == b'-' && digits(&zip[6..]),
        _ => false,
    };
    let state = tokens.next()?;
    (zip_ok && US_STATES.contains(&state)).then(|| state.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_come_from_the_end_of_us_addresses() {
        assert_eq!(
            us_state("10265 Elizabeth Mission Barkerburgh, AK 89518").as_deref(),
            Some("AK")
        );
        assert_eq!(
            us_state("1 Main St, Springfield, IL 62701-1234").as_deref(),
            Some("IL")
        );
        assert_eq!(us_state("Unit 0789 Box 0734 DPO AP 91200"), None);
        assert_eq!(us_state("Rue de Rivoli, Paris"), None);
        assert_eq!(us_state(""), None);
        assert_eq!(
            us_state("1 Main St, AK 123€abcd"),
            None,
            "a multi-byte character where the ZIP+4 dash goes"
        );
        assert_eq!(us_state("1 Main St, AK 62701x1234"), None);
        assert_eq!(us_state("1 Main St, AK 6270€"), None);
    }
}
