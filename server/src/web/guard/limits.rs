//! Per-client limits, so one client cannot take what all share: submissions per second (a
//! token bucket per user, token or address, answered 429 with Retry-After), and live-feed
//! connections per client and in all. A client is its signed-in user or API token; only
//! anonymous requests are counted by address (behind a proxy that is the proxy's).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use app::{CurrentUser, FeedSlot};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use leptos::server_fn::ServerFn;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOptions {
    /// Submissions per second per client, on average.
    pub submit_per_second: NonZeroU32,
    /// Submissions a client may send at once after a quiet spell.
    pub submit_burst: NonZeroU32,
    /// Live-feed connections per client (a person with a few tabs open).
    pub feeds_per_client: usize,
    /// Live-feed connections in all.
    pub feeds_total: usize,
}

impl Default for LimitOptions {
    fn default() -> Self {
        LimitOptions {
            // The form's what-if sliders send a few per second while dragged; a script
            // scoring a list one by one gets 20/s — batch files belong to `churn score-file`.
            submit_per_second: NonZeroU32::new(20).expect("non-zero"),
            submit_burst: NonZeroU32::new(40).expect("non-zero"),
            feeds_per_client: 8,
            feeds_total: 1_000,
        }
    }
}

/// How many clients' buckets are kept before the idle ones are forgotten.
const BUCKETS_KEPT: usize = 10_000;

pub struct ClientLimits {
    submissions: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
    feeds_total: Arc<Semaphore>,
    feeds_per_client: usize,
    feeds_open: Arc<Mutex<HashMap<String, usize>>>,
}

impl ClientLimits {
    pub fn new(options: &LimitOptions) -> ClientLimits {
        let quota = Quota::per_second(options.submit_per_second).allow_burst(options.submit_burst);
        ClientLimits {
            submissions: RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
            feeds_total: Arc::new(Semaphore::new(options.feeds_total)),
            feeds_per_client: options.feeds_per_client,
            feeds_open: Arc::default(),
        }
    }

    /// `Ok` if the client may submit now, else how many whole seconds to wait.
    pub fn submit(&self, client: &str) -> Result<(), u64> {
        // Full buckets hold nothing worth keeping: forget them now and then, so a stream of
        // new addresses cannot grow the map without end.
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks.is_multiple_of(1024) || self.submissions.len() > BUCKETS_KEPT {
            self.submissions.retain_recent();
            self.submissions.shrink_to_fit();
        }
        self.submissions
            .check_key(&client.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }

    /// A live-feed slot for the client, held until the connection ends, or `None` when the
    /// client or the server has as many open as allowed.
    pub fn open_feed(&self, client: &str) -> Option<FeedSlot> {
        let mut open = self.feeds_open.lock().expect("feed counts");
        let count = open.entry(client.to_owned()).or_default();
        if *count >= self.feeds_per_client {
            return None;
        }
        let permit = self.feeds_total.clone().try_acquire_owned().ok()?;
        *count += 1;
        Some(FeedSlot(Arc::new(OpenFeed {
            _permit: permit,
            client: client.to_owned(),
            open: self.feeds_open.clone(),
        })))
    }

    /// Live-feed connections open now.
    pub fn feeds_open(&self) -> usize {
        self.feeds_open.lock().expect("feed counts").values().sum()
    }
}

/// One open live-feed connection; dropping it frees its slots.
struct OpenFeed {
    _permit: OwnedSemaphorePermit,
    client: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for OpenFeed {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Who the limits count a request against.
fn client_of(request: &Request) -> String {
    if let Some(user) = request.extensions().get::<CurrentUser>() {
        return format!("user:{}", user.name);
    }
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => format!(
            "address:{}",
            crate::web::listener::client_network(peer.ip())
        ),
        None => "address:unknown".to_owned(),
    }
}

fn is_submission(request: &Request) -> bool {
    request.method() == Method::POST
        && matches!(
            request.uri().path(),
            "/api/v1/predict" | <app::api::Predict as ServerFn>::PATH
        )
}

fn is_feed(request: &Request) -> bool {
    request.uri().path() == <app::api::LiveFeed as ServerFn>::PATH
}

fn too_many(why: &str, retry_after: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after.to_string())],
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

pub async fn check(
    State(limits): State<Arc<ClientLimits>>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_submission(&request) {
        let client = client_of(&request);
        if let Err(seconds) = limits.submit(&client) {
            return too_many(
                &format!("too many submissions; try again in {seconds} s"),
                seconds,
            );
        }
    } else if is_feed(&request) {
        let client = client_of(&request);
        match limits.open_feed(&client) {
            Some(slot) => {
                request.extensions_mut().insert(slot);
            }
            None => {
                return too_many(
                    "too many live connections open; close another tab and reload",
                    5,
                )
            }
        }
    }
    next.run(request).await
}
