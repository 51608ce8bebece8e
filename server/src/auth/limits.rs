//! Limits on sign-ins: failures per client address (10 in 15 minutes, then 429 until the oldest
//! is 15 minutes old), and one password check at a time — Argon2 costs about 19 MiB and tens of
//! milliseconds each, so a flood of sign-ins holds one core at most. Failures count against the
//! address, not the name tried: counting names would let anyone lock `admin` out with ten bad
//! passwords. Guessing from many addresses is bounded by the one-at-a-time check (~30 a second
//! in all) and by passwords of 12+ characters. Used-up or unknown sign-in links count the same.
//!
//! Hand-written rather than with `governor`: only failures count, and a sign-in must be refused
//! *before* its password is checked, which needs a look without taking a cell.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Semaphore;

pub const MAX_FAILURES: usize = 10;
pub const WINDOW: TimeDelta = TimeDelta::minutes(15);
/// Keys remembered at most: past it, expired ones are dropped, and new ones are not counted
/// (ever-new names cannot grow the map; per-address counting still holds).
const MAX_KEYS: usize = 100_000;
/// Password checks waiting at most; more are answered "busy" at once.
const MAX_WAITING: usize = 32;

/// What a sign-in counts against: its client address; the name tried only when the address is
/// unknown (a socket without one).
pub fn keys(name: &str, peer: Option<IpAddr>) -> Vec<String> {
    match peer {
        Some(ip) => vec![format!("ip:{}", crate::web::listener::client_network(ip))],
        None => {
            let name: String = name.chars().take(64).collect::<String>().to_lowercase();
            vec![format!("user:{name}")]
        }
    }
}

#[derive(Default)]
pub struct LoginLimits {
    failures: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
    /// When a full map was last swept of expired keys: at most once a minute, so a full map
    /// does not cost a pass over 100,000 keys on every failure.
    swept: Mutex<Option<DateTime<Utc>>>,
}

impl LoginLimits {
    /// How long until a sign-in counting against `keys` may be tried, if it may not now.
    pub fn retry_after(&self, keys: &[String], now: DateTime<Utc>) -> Option<Duration> {
        let failures = self.failures.lock().expect("limits lock");
        keys.iter()
            .filter_map(|key| {
                let recent: Vec<_> = failures
                    .get(key)?
                    .iter()
                    .filter(|at| now - **at < WINDOW)
                    .collect();
                (recent.len() >= MAX_FAILURES)
                    .then(|| *recent[recent.len() - MAX_FAILURES] + WINDOW - now)
            })
            .max()
            .map(|wait| {
                wait.to_std()
                    .unwrap_or_default()
                    .max(Duration::from_secs(1))
            })
    }

    pub fn failed(&self, keys: &[String], now: DateTime<Utc>) {
        let mut failures = self.failures.lock().expect("limits lock");
        if failures.len() >= MAX_KEYS {
            let mut swept = self.swept.lock().expect("limits lock");
            if swept.is_none_or(|at| now - at >= TimeDelta::minutes(1)) {
                failures.retain(|_, times| times.back().is_some_and(|at| now - *at < WINDOW));
                *swept = Some(now);
            }
        }
        for key in keys {
            if failures.len() >= MAX_KEYS && !failures.contains_key(key) {
                continue;
            }
            let times = failures.entry(key.clone()).or_default();
            times.push_back(now);
            while times.len() > MAX_FAILURES || times.front().is_some_and(|at| now - *at >= WINDOW)
            {
                times.pop_front();
            }
        }
    }
}

/// One password check at a time, on a blocking thread; at most `MAX_WAITING` in line.
pub struct PasswordGate {
    running: Semaphore,
    line: Semaphore,
}

impl Default for PasswordGate {
    fn default() -> Self {
        PasswordGate {
            running: Semaphore::new(1),
            line: Semaphore::new(MAX_WAITING),
        }
    }
}

impl PasswordGate {
    /// `check`'s answer, or `None` when too many are waiting.
    pub async fn run(&self, check: impl FnOnce() -> bool + Send + 'static) -> Option<bool> {
        let _in_line = self.line.try_acquire().ok()?;
        let _running = self.running.acquire().await.ok()?;
        tokio::task::spawn_blocking(check).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_block_for_fifteen_minutes_from_the_oldest() {
        let limits = LoginLimits::default();
        let t0 = Utc::now();
        let keys = keys("Ann", Some("10.0.0.9".parse().unwrap()));
        for i in 0..9 {
            limits.failed(&keys, t0 + TimeDelta::seconds(i));
        }
        assert_eq!(limits.retry_after(&keys, t0 + TimeDelta::seconds(9)), None);
        limits.failed(&keys, t0 + TimeDelta::seconds(9));
        let wait = limits
            .retry_after(&keys, t0 + TimeDelta::seconds(10))
            .unwrap();
        assert_eq!(wait, Duration::from_secs(15 * 60 - 10));
        // Another name from the same address: blocked. The same name from another address is
        // not: a stranger cannot lock an account out.
        let same_ip = super::keys("bob", Some("10.0.0.9".parse().unwrap()));
        assert!(limits
            .retry_after(&same_ip, t0 + TimeDelta::seconds(10))
            .is_some());
        let same_name = super::keys("ANN", Some("10.0.0.10".parse().unwrap()));
        assert_eq!(
            limits.retry_after(&same_name, t0 + TimeDelta::seconds(10)),
            None
        );
        // The oldest failure leaves the window: one more try.
        assert_eq!(limits.retry_after(&keys, t0 + WINDOW), None);
        let other = super::keys("carl", Some("10.0.0.11".parse().unwrap()));
        assert_eq!(limits.retry_after(&other, t0), None);
    }

    #[test]
    fn an_ipv4_mapped_address_counts_as_the_ipv4_one() {
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert_eq!(keys("a", Some(mapped)), ["ip:10.0.0.9"]);
        assert_eq!(keys("Ann", None), ["user:ann"]);
        // One IPv6 subscriber (a /64) is one client, however many addresses it uses.
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(keys("a", Some(a)), keys("b", Some(b)));
        assert_eq!(keys("a", Some(a)), ["ip:2001:db8:1:2::"]);
        assert_ne!(keys("a", Some(a)), keys("a", Some(other)));
    }

    #[tokio::test]
    async fn a_flood_of_checks_runs_one_at_a_time_and_refuses_the_excess() {
        let gate = std::sync::Arc::new(PasswordGate::default());
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..MAX_WAITING + 20)
            .map(|_| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    gate.run(move || {
                        use std::sync::atomic::Ordering::SeqCst;
                        let now = running.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, SeqCst);
                        true
                    })
                    .await
                })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            if task.await.unwrap().is_none() {
                refused += 1;
            }
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(refused >= 1, "some are refused while {MAX_WAITING} wait");
    }
}
