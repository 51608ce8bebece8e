//! Internal errors stay in the server log: what a browser or an API client is told carries a
//! short error id instead, to quote when asking for help and to find the details by. Broker
//! addresses, topic names and librdkafka's texts are for operators, not for every visitor.

use std::fmt::Display;

/// Logs `error` (what failed, and why) under a fresh error id, and returns the id.
pub fn log(what: &str, error: &dyn Display) -> String {
    let id = format!("{:08x}", rand::random::<u32>());
    // Cut: an error may quote input from elsewhere (a broker, a hostile message).
    let detail = error.to_string();
    tracing::warn!(error_id = %id, "{what}: {}", model::record::truncate_utf8(&detail, 1000));
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_short_and_fresh() {
        let a = super::log("testing", &"boom at 10.1.2.3:9092");
        let b = super::log("testing", &"boom at 10.1.2.3:9092");
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(!a.contains("9092"));
    }
}
