//! Running per-record measures in constant memory: mean and variance (Welford), and calibration
//! in ten fixed bins.

use serde::{Deserialize, Serialize};

use super::normal;

/// A figure with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// Mean and variance of a stream, numerically stable (Welford).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    count: u64,
    mean: f64,
    sum_squares: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.sum_squares += delta * (x - self.mean);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The mean with a normal `z` interval (z · s / √n); None below two observations.
    pub fn estimate(&self, z: f64) -> Option<Estimate> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let se = (self.sum_squares.max(0.0) / (n - 1.0) / n).sqrt();
        Some(Estimate {
            value: self.mean,
            low: self.mean - z * se,
            high: self.mean + z * se,
        })
    }
}

/// Bins of equal width on [0, 1] for the expected calibration error.
pub const CALIBRATION_BINS: usize = 10;

/// Per bin: how many predictions fell in it and the sums of (outcome − probability) and its
/// square — enough for each bin's gap and its standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Calibration {
    bins: [(u64, f64, f64); CALIBRATION_BINS],
}

impl Calibration {
    pub fn push(&mut self, probability: f64, label: bool) {
        let bin = ((probability * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
        let gap = f64::from(u8::from(label)) - probability;
        let b = &mut self.bins[bin];
        b.0 += 1;
        b.1 += gap;
        b.2 += gap * gap;
    }

    /// ECE = Σ (nᵦ / n) · |mean outcome − mean probability in bin b|, with an approximate
    /// interval: each bin's gap taken as normal with its standard error, |gap| as a folded
    /// normal, bins independent. ECE is biased upwards in small samples (noise never cancels
    /// under |·|), and so is this interval near 0 — a dashboard figure, never used to decide.
    pub fn expected_error(&self, z: f64) -> Option<Estimate> {
        let total: u64 = self.bins.iter().map(|b| b.0).sum();
        if total == 0 {
            return None;
        }
        let (mut ece, mut variance) = (0.0, 0.0);
        for &(count, sum, sum_squares) in self.bins.iter().filter(|b| b.0 > 0) {
            let n = count as f64;
            let weight = n / total as f64;
            let gap = sum / n;
            let sd = ((sum_squares / n - gap * gap).max(0.0) / n).sqrt();
            ece += weight * gap.abs();
            variance += weight * weight * folded_variance(gap, sd);
        }
        let half = z * variance.sqrt();
        Some(Estimate {
            value: ece,
            low: (ece - half).max(0.0),
            high: ece + half,
        })
    }
}

/// Var|X| for X ~ N(mu, sd²).
fn folded_variance(mu: f64, sd: f64) -> f64 {
    if sd == 0.0 {
        return 0.0;
    }
    let mean_abs = sd * (2.0 / std::f64::consts::PI).sqrt() * (-mu * mu / (2.0 * sd * sd)).exp()
        + mu * (1.0 - 2.0 * normal::cdf(-mu / sd));
    (mu * mu + sd * sd - mean_abs * mean_abs).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_match_the_two_pass_formula_even_far_from_zero() {
        let xs: Vec<f64> = (0..1000).map(|i| 1e9 + (i % 7) as f64 * 0.5).collect();
        let mut m = Moments::default();
        xs.iter().for_each(|&x| m.push(x));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 999.0;
        let e = m.estimate(1.96).unwrap();
        assert!((e.value - mean).abs() < 1e-6);
        // At 1e9 the bounds themselves carry ~1e-7 of rounding.
        assert!(((e.high - e.value) - 1.96 * (var / 1000.0).sqrt()).abs() < 1e-6);
        assert_eq!(Moments::default().estimate(1.96), None);
    }

    #[test]
    fn calibration_of_a_perfect_forecaster_is_near_zero_and_of_a_liar_is_large() {
        let mut honest = Calibration::default();
        let mut liar = Calibration::default();
        // In each bin, the outcome rate equals the probability said.
        for k in 0..10 {
            let p = (k as f64 + 0.5) / 10.0;
            for i in 0..1000 {
                let label = (i as f64) < (p * 1000.0).round();
                honest.push(p, label);
                liar.push(1.0 - p, label);
            }
        }
        let h = honest.expected_error(1.96).unwrap();
        assert!(h.value < 1e-9 && h.low == 0.0);
        let l = liar.expected_error(1.96).unwrap();
        assert!((l.value - 0.5).abs() < 1e-9, "{l:?}");
        assert!(l.low < l.value && l.value < l.high && l.high - l.low < 0.05);
        assert_eq!(Calibration::default().expected_error(1.96), None);
    }

    #[test]
    fn calibration_bins_take_the_edges() {
        let mut c = Calibration::default();
        c.push(1.0, true);
        c.push(0.0, false);
        assert_eq!(c.expected_error(1.96).unwrap().value, 0.0);
    }

    #[test]
    fn folded_variance_limits() {
        // Far from zero |X| is X: the variance is sd².
        assert!((folded_variance(10.0, 1.0) - 1.0).abs() < 1e-6);
        // At zero: sd² (1 − 2/π).
        assert!((folded_variance(0.0, 1.0) - (1.0 - 2.0 / std::f64::consts::PI)).abs() < 1e-6);
    }
}
