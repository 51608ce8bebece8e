//! Cross-site request forgery: a page on another site must not make a signed-in browser submit,
//! log in, log out or open the live feed. Browsers say where a request comes from (`Origin`,
//! `Sec-Fetch-Site`); writes and websocket handshakes from anywhere but this site are refused.
//! The session cookie is `SameSite=Strict` as well; this check does not rely on it.
//!
//! Programs (curl, scripts with an API token) send neither header and pass: forgery needs a
//! browser, and every current browser sends `Origin` on these requests.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::GuardOptions;

/// Other sites allowed to call this one (`--allowed-origins`), e.g. `https://portal.example.com`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(origins: I) -> AllowedOrigins {
        AllowedOrigins(
            origins
                .into_iter()
                .map(|o| o.as_ref().trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        )
    }

    fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

/// Requests that change something, or open a websocket: the ones a foreign page must not send.
fn needs_same_origin(method: &Method, headers: &HeaderMap) -> bool {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    !safe || websocket
}

/// `scheme://host[:port]` without the scheme and the default port, lower case.
fn authority_of_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let authority = rest.to_ascii_lowercase();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    Some(
        authority
            .strip_suffix(default_port)
            .map_or(authority.clone(), str::to_owned),
    )
}

/// Why a request is refused, or `None` when it may go on.
///
/// `authority` is the URI's host for HTTP/2, which sends no `Host` header.
pub fn refusal(
    method: &Method,
    headers: &HeaderMap,
    authority: Option<&str>,
    allowed: &AllowedOrigins,
) -> Option<&'static str> {
    if !needs_same_origin(method, headers) {
        return None;
    }
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""));
    if let Some(origin) = origin {
        let origin = origin.trim().to_ascii_lowercase();
        if allowed.contains(&origin) {
            return None;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(authority)
            .map(|h| h.trim().to_ascii_lowercase());
        // The Host check has already vouched for the host: an origin naming it is this site.
        let same = match (authority_of_origin(&origin), host) {
            (Some(from), Some(host)) => {
                from == host
                    || from == host.trim_end_matches(":80")
                    || from == host.trim_end_matches(":443")
            }
            _ => false,
        };
        if !same {
            return Some(
                "cross-site request refused: this page may only be used from its own site",
            );
        }
    }
    // Sec-Fetch-Site is set by the browser and cannot be forged by a page. An allowed origin
    // has been let through above; anything else must be same-origin, so `same-site` (a
    // sibling subdomain, or this host over the other scheme: http:// posting to https://) is
    // refused too, though its Origin names this host.
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin") | Some("none") | None => None,
        Some(_) => Some("cross-site request refused: this page may only be used from its own site"),
    }
}

pub async fn check(
    State(options): State<Arc<GuardOptions>>,
    request: Request,
    next: Next,
) -> Response {
    let authority = request.uri().authority().map(|a| a.as_str());
    match refusal(
        request.method(),
        request.headers(),
        authority,
        &options.allowed_origins,
    ) {
        None => next.run(request).await,
        Some(why) => {
            tracing::debug!(path = request.uri().path(), "{why}");
            (StatusCode::FORBIDDEN, why).into_response()
        }
    }
}
