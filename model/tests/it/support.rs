//! What several test modules use.

include!("every_feature_model.rs");

/// Equal, or the nearest neighbours: serde_json parses floats fast rather than exactly (its
/// `float_roundtrip` feature is off), so about one float in ten comes back one unit in the
/// last place off.
pub fn close(a: f64, b: f64) -> bool {
    a == b || a.next_up() == b || a.next_down() == b
}
