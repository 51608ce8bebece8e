//! What the web server refuses before any handler runs, one concept a file: names it does not
//! answer to (`hosts`, against DNS rebinding), cross-site writes and websockets (`origin`),
//! the headers every answer carries (`headers`, with the CSP nonce), and the per-client limits
//! (`limits`: submissions per second, live-feed connections).
//!
//! Who a request comes from is decided by `crate::auth` between `origin` and `limits`, so the
//! limits count per signed-in user or token, and per address only for anonymous requests.

mod headers;
mod hosts;
mod limits;
mod origin;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::Router;

pub use headers::content_security_policy;
pub use hosts::AllowedHosts;
pub use limits::{ClientLimits, LimitOptions};
pub use origin::AllowedOrigins;

/// How the web server protects itself; `churn serve`'s flags fill it in.
#[derive(Debug, Clone)]
pub struct GuardOptions {
    pub allowed_hosts: AllowedHosts,
    pub allowed_origins: AllowedOrigins,
    pub limits: LimitOptions,
    /// Longest a request may take, body included, before it is answered 408.
    pub request_timeout: Duration,
    /// The server speaks HTTPS: browsers are told to keep to it (HSTS).
    pub https: bool,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions {
            allowed_hosts: AllowedHosts::default(),
            allowed_origins: AllowedOrigins::default(),
            limits: LimitOptions::default(),
            request_timeout: Duration::from_secs(30),
            https: false,
        }
    }
}

/// The guard's shared state: the options and the per-client counters.
#[derive(Clone)]
pub struct Guard {
    pub options: Arc<GuardOptions>,
    pub limits: Arc<ClientLimits>,
}

impl Guard {
    pub fn new(options: GuardOptions) -> Guard {
        Guard {
            limits: Arc::new(ClientLimits::new(&options.limits)),
            options: Arc::new(options),
        }
    }
}

/// The per-client limits; they go inside the identity check, which must run first.
pub fn inner_layers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    guard: &Guard,
) -> Router<S> {
    router.layer(from_fn_with_state(guard.limits.clone(), limits::check))
}

/// The checks that need no identity, outermost last: the same-origin check, the Host check,
/// the request timeout, then the headers, which every answer carries — refusals included.
pub fn outer_layers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    guard: &Guard,
) -> Router<S> {
    let options = guard.options.clone();
    router
        .layer(from_fn_with_state(options.clone(), origin::check))
        .layer(from_fn_with_state(options.clone(), hosts::check))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ))
        .layer(from_fn_with_state(options.https, headers::add))
}
