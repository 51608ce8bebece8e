//! The Host allowlist. A page on `evil.example` whose name is re-pointed at 127.0.0.1 (DNS
//! rebinding) reaches a loopback server with `Host: evil.example`; answering only to names we
//! know stops it. IP addresses are always accepted: rebinding needs a name the attacker owns.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::GuardOptions;

/// The host names the server answers to (besides IP addresses and `localhost`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
    any: bool,
}

impl AllowedHosts {
    /// From `--allowed-hosts`: names, `.example.com` for a domain and its subdomains, or `*`.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> AllowedHosts {
        let mut hosts = AllowedHosts::default();
        for name in names {
            let name = name
                .as_ref()
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            match name.as_str() {
                "" => {}
                "*" => hosts.any = true,
                _ => hosts.names.push(name),
            }
        }
        hosts
    }

    /// Whether a `Host` header value (a name or address, maybe with a port) is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if self.any || name == "localhost" || name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        self.names
            .iter()
            .any(|allowed| match allowed.strip_prefix('.') {
                Some(domain) => name == domain || name.ends_with(allowed.as_str()),
                None => name == *allowed,
            })
    }
}

/// The name or address of a Host header, lower case, without port or brackets; `None` when it
/// is no host at all (empty, bad port, characters no host name has).
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [::1]:3000
        let (address, after) = rest.split_once(']')?;
        (address, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port {
        port.parse::<u16>().ok()?;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'));
    valid.then_some(name)
}

/// Refuses requests for a host name not on the list (400, as Django's ALLOWED_HOSTS does).
pub async fn check(
    State(options): State<Arc<GuardOptions>>,
    request: Request,
    next: Next,
) -> Response {
    // HTTP/2 carries the host in the URI's authority rather than a Host header.
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        // No host at all (HTTP/1.0, a test): no page a browser loaded sends that.
        None => next.run(request).await,
        Some(host) if options.allowed_hosts.allows(&host) => next.run(request).await,
        Some(host) => {
            let shown: String = host.chars().take(80).collect();
            tracing::debug!(host = %shown.escape_debug(), "refused a request for a host name not allowed");
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "this server does not answer to the host name {:?}; its operator can allow it with --allowed-hosts",
                    shown
                ),
            )
                .into_response()
        }
    }
}
