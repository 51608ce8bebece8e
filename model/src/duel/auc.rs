//! AUC for two models scored on the same records, with DeLong's variance (DeLong, DeLong &
//! Clarke-Pearson 1988, in the O(n log n) midrank form of Sun & Xu 2014), on a bounded sample.
//!
//! AUC is not a mean of per-record terms, so it needs the scores themselves. `PairedSample` keeps
//! at most `capacity` records by systematic thinning: every record until it is full, then every
//! second of those and every second record after, then every fourth, and so on — always the
//! records whose index is a multiple of the current stride, between capacity/2 and capacity of
//! them, spread evenly over the whole stream and the same on every run. Up to `capacity` records
//! the AUC figures are exact; beyond it they are those of that sample, so their intervals reflect
//! the sample's size (wider than the whole stream would give: conservative, never overconfident).

/// One labelled record scored by both models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    pub label: bool,
    pub champion: f64,
    pub challenger: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PairedSample {
    capacity: usize,
    stride: u64,
    seen: u64,
    kept: Vec<Paired>,
}

impl PairedSample {
    /// `capacity` is rounded up to an even number of at least 2.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2).next_multiple_of(2);
        Self {
            capacity,
            stride: 1,
            seen: 0,
            kept: Vec::new(),
        }
    }

    pub fn push(&mut self, record: Paired) {
        if self.seen.is_multiple_of(self.stride) {
            self.kept.push(record);
            if self.kept.len() >= self.capacity {
                // Keep indices that are multiples of twice the stride: the even positions.
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }

    pub fn records(&self) -> &[Paired] {
        &self.kept
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Both models' AUCs on the same records, DeLong's variances and their covariance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedAuc {
    pub champion: f64,
    pub challenger: f64,
    pub champion_variance: f64,
    pub challenger_variance: f64,
    pub covariance: f64,
}

impl PairedAuc {
    /// The variance of challenger AUC − champion AUC.
    pub fn difference_variance(&self) -> f64 {
        (self.champion_variance + self.challenger_variance - 2.0 * self.covariance).max(0.0)
    }
}

/// DeLong's paired AUC; None unless there are at least two records of each class (a variance
/// needs two).
pub fn paired_delong(records: &[Paired]) -> Option<PairedAuc> {
    let positives: Vec<&Paired> = records.iter().filter(|r| r.label).collect();
    let negatives: Vec<&Paired> = records.iter().filter(|r| !r.label).collect();
    let (m, n) = (positives.len(), negatives.len());
    if m < 2 || n < 2 {
        return None;
    }
    let components = |score: fn(&Paired) -> f64| {
        let x: Vec<f64> = positives.iter().map(|r| score(r)).collect();
        let y: Vec<f64> = negatives.iter().map(|r| score(r)).collect();
        let all: Vec<f64> = x.iter().chain(&y).copied().collect();
        let (tx, ty, tz) = (midranks(&x), midranks(&y), midranks(&all));
        // V10ᵢ: the share of negatives a positive outscores; V01ⱼ: of positives outscoring a
        // negative. Ties count half.
        let v10: Vec<f64> = (0..m).map(|i| (tz[i] - tx[i]) / n as f64).collect();
        let v01: Vec<f64> = (0..n)
            .map(|j| 1.0 - (tz[m + j] - ty[j]) / m as f64)
            .collect();
        let auc = v10.iter().sum::<f64>() / m as f64;
        (auc, v10, v01)
    };
    let (auc_a, v10_a, v01_a) = components(|r| r.champion);
    let (auc_b, v10_b, v01_b) = components(|r| r.challenger);
    let var = |p: &[f64], q: &[f64]| covariance(p, q) / p.len() as f64;
    Some(PairedAuc {
        champion: auc_a,
        challenger: auc_b,
        champion_variance: var(&v10_a, &v10_a) + var(&v01_a, &v01_a),
        challenger_variance: var(&v10_b, &v10_b) + var(&v01_b, &v01_b),
        covariance: var(&v10_a, &v10_b) + var(&v01_a, &v01_b),
    })
}

/// Sample covariance (n − 1 in the denominator).
fn covariance(p: &[f64], q: &[f64]) -> f64 {
    let n = p.len() as f64;
    let (mp, mq) = (p.iter().sum::<f64>() / n, q.iter().sum::<f64>() / n);
    p.iter()
        .zip(q)
        .map(|(a, b)| (a - mp) * (b - mq))
        .sum::<f64>()
        / (n - 1.0)
}

/// 1-based ranks in input order, tied values sharing the mean of their ranks.
fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::roc_auc;

    fn record(label: bool, champion: f64, challenger: f64) -> Paired {
        Paired {
            label,
            champion,
            challenger,
        }
    }

    /// A deterministic, tie-rich stream: scores on a coarse grid.
    fn stream(n: usize) -> Vec<Paired> {
        let mut state = 7_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        (0..n)
            .map(|_| {
                let label = next() < 0.3;
                let shift = if label { 0.2 } else { 0.0 };
                let a = ((next() * 0.8 + shift) * 20.0).round() / 20.0;
                let b = ((a + next() * 0.3 - 0.1 + shift / 2.0) * 20.0).round() / 20.0;
                record(label, a, b)
            })
            .collect()
    }

    /// DeLong's structural components straight from the definition, O(m·n).
    fn brute_force(records: &[Paired], score: fn(&Paired) -> f64) -> (f64, Vec<f64>, Vec<f64>) {
        let pos: Vec<f64> = records.iter().filter(|r| r.label).map(score).collect();
        let neg: Vec<f64> = records.iter().filter(|r| !r.label).map(score).collect();
        let psi = |x: f64, y: f64| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        };
        let v10: Vec<f64> = pos
            .iter()
            .map(|&x| neg.iter().map(|&y| psi(x, y)).sum::<f64>() / neg.len() as f64)
            .collect();
        let v01: Vec<f64> = neg
            .iter()
            .map(|&y| pos.iter().map(|&x| psi(x, y)).sum::<f64>() / pos.len() as f64)
            .collect();
        (v10.iter().sum::<f64>() / pos.len() as f64, v10, v01)
    }

    #[test]
    fn delong_matches_the_definition_with_ties() {
        let records = stream(600);
        let fast = paired_delong(&records).unwrap();
        let (auc_a, v10_a, v01_a) = brute_force(&records, |r| r.champion);
        let (auc_b, v10_b, v01_b) = brute_force(&records, |r| r.challenger);
        let var = |p: &[f64], q: &[f64]| covariance(p, q) / p.len() as f64;
        assert!((fast.champion - auc_a).abs() < 1e-12);
        assert!((fast.challenger - auc_b).abs() < 1e-12);
        let expected_cov = var(&v10_a, &v10_b) + var(&v01_a, &v01_b);
        assert!((fast.covariance - expected_cov).abs() < 1e-12);
        let expected_var = var(&v10_a, &v10_a) + var(&v01_a, &v01_a);
        assert!((fast.champion_variance - expected_var).abs() < 1e-12);
        // And the AUC is the trainer's AUC.
        let (p, y): (Vec<f64>, Vec<bool>) = records.iter().map(|r| (r.champion, r.label)).unzip();
        assert!((fast.champion - roc_auc(&p, &y)).abs() < 1e-12);
    }

    #[test]
    fn identical_models_have_zero_difference_variance() {
        let records: Vec<Paired> = stream(300)
            .into_iter()
            .map(|r| record(r.label, r.champion, r.champion))
            .collect();
        let auc = paired_delong(&records).unwrap();
        assert_eq!(auc.champion, auc.challenger);
        assert!(auc.difference_variance() < 1e-15);
    }

    #[test]
    fn one_class_or_a_single_record_of_a_class_has_no_auc() {
        assert_eq!(paired_delong(&[]), None);
        let negatives = vec![record(false, 0.1, 0.2); 50];
        assert_eq!(paired_delong(&negatives), None);
        let mut one_positive = negatives.clone();
        one_positive.push(record(true, 0.9, 0.9));
        assert_eq!(paired_delong(&one_positive), None);
    }

    #[test]
    fn perfect_separation_has_auc_one_and_no_variance() {
        let mut records: Vec<Paired> = (0..20)
            .map(|i| record(false, i as f64 / 100.0, 0.5))
            .collect();
        records.extend((0..20).map(|i| record(true, 0.5 + i as f64 / 100.0, 0.5)));
        let auc = paired_delong(&records).unwrap();
        assert_eq!(auc.champion, 1.0);
        assert_eq!(auc.champion_variance, 0.0);
        assert_eq!(auc.challenger, 0.5, "constant scores tie everywhere");
    }

    #[test]
    fn sample_is_bounded_and_keeps_every_stride_th_record() {
        let mut sample = PairedSample::new(7);
        assert_eq!(sample.capacity(), 8);
        for i in 0..1000 {
            sample.push(record(i % 2 == 0, i as f64, 0.0));
            assert!(sample.records().len() < 8, "at {i}");
        }
        let kept: Vec<f64> = sample.records().iter().map(|r| r.champion).collect();
        // 1000 records, stride 256 after the thinnings: 0, 256, 512, 768.
        assert_eq!(kept, vec![0.0, 256.0, 512.0, 768.0]);
        let mut small = PairedSample::new(100);
        for i in 0..99 {
            small.push(record(true, i as f64, 0.0));
        }
        assert_eq!(small.records().len(), 99, "exact below capacity");
    }
}
