//! The headers on every answer: a Content-Security-Policy with a fresh nonce per page (the only
//! inline script is Leptos' hydration loader, which carries the nonce), no framing, no MIME
//! sniffing, no referrer beyond this site, and no caching of pages that hold customer data.

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use leptos::nonce::Nonce;

/// The policy for a page whose inline scripts carry `nonce`.
///
/// - `'wasm-unsafe-eval'` lets the page compile the app's WebAssembly; it allows no JS `eval`.
/// - `style-src-attr 'unsafe-inline'`: the bars' widths are `style` attributes rendered on the
///   server; style *elements* and every script still need to come from this site.
/// - `connect-src 'self'` covers the live feed's websocket on the same host.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

const STATIC: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "same-origin"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=()",
    ),
];

/// The bundle under /pkg and the files beside it hold no customer data: they may be cached.
fn is_static_file(path: &str) -> bool {
    path.starts_with("/pkg/") || path == "/favicon.svg"
}

/// Gives the request a nonce (the page's shell reads it from the request's extensions) and the
/// answer its security headers.
pub async fn add(State(https): State<bool>, mut request: Request, next: Next) -> Response {
    let nonce = Nonce::new();
    let policy = content_security_policy(&nonce);
    let cacheable = is_static_file(request.uri().path());
    request.extensions_mut().insert(nonce);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    for (name, value) in STATIC {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if !cacheable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}
