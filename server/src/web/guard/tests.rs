//! The guard's decisions, without a router; the router-level tests are in `web::tests`.

use axum::http::{header, HeaderMap, HeaderValue, Method};

use super::hosts::AllowedHosts;
use super::limits::{ClientLimits, LimitOptions};
use super::origin::{refusal, AllowedOrigins};

#[test]
fn hosts_allow_addresses_localhost_and_listed_names_only() {
    let hosts = AllowedHosts::new(["churn.example.com", ".corp.example"]);
    for allowed in [
        "127.0.0.1:3000",
        "localhost",
        "LOCALHOST:80",
        "[::1]:3000",
        "10.1.2.3",
        "churn.example.com",
        "Churn.Example.Com.:443",
        "corp.example",
        "a.b.corp.example:8080",
    ] {
        assert!(hosts.allows(allowed), "{allowed}");
    }
    for refused in [
        "evil.example",
        "churn.example.com.evil.example",
        "evilcorp.example",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "",
        ":3000",
        "churn.example.com:99999",
        "churn.example.com:x",
        "[::1",
        "exa mple.com",
        "ex\u{e1}mple.com",
        &"a".repeat(300),
    ] {
        assert!(!hosts.allows(refused), "{refused:?}");
    }
    assert!(AllowedHosts::new(["*"]).allows("anything.example"));
    assert!(!AllowedHosts::default().allows("churn.example.com"));
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn writes_and_websockets_from_another_site_are_refused() {
    let none = AllowedOrigins::default();
    let host = ("host", "127.0.0.1:3000");
    let ws = [("upgrade", "websocket"), host];
    // Same site, and programs without browser headers, pass.
    for ok in [
        headers(&[host, ("origin", "http://127.0.0.1:3000")]),
        headers(&[host, ("origin", "https://127.0.0.1:3000")]),
        headers(&[
            host,
            ("origin", "http://127.0.0.1:3000"),
            ("sec-fetch-site", "same-origin"),
        ]),
        headers(&[host]),
        headers(&[host, ("sec-fetch-site", "none")]),
        headers(&[
            ("host", "churn.example.com"),
            ("origin", "https://churn.example.com:443"),
        ]),
        headers(&[
            ("host", "churn.example.com:80"),
            ("origin", "http://churn.example.com"),
        ]),
    ] {
        assert_eq!(refusal(&Method::POST, &ok, None, &none), None, "{ok:?}");
    }
    for bad in [
        headers(&[host, ("origin", "http://evil.example")]),
        headers(&[host, ("origin", "http://127.0.0.1:3001")]),
        headers(&[host, ("origin", "null")]),
        headers(&[host, ("origin", "file://")]),
        headers(&[host, ("origin", "http://127.0.0.1:3000.evil.example")]),
        headers(&[host, ("sec-fetch-site", "cross-site")]),
        headers(&[host, ("sec-fetch-site", "same-site")]),
        // This host over the other scheme (or a sibling subdomain) is same-site, not
        // same-origin: a man in the middle on http:// must not post to the https:// app.
        headers(&[
            host,
            ("origin", "http://127.0.0.1:3000"),
            ("sec-fetch-site", "same-site"),
        ]),
        headers(&[
            host,
            ("origin", "http://127.0.0.1:3000"),
            ("sec-fetch-site", "cross-site"),
        ]),
    ] {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(
                refusal(&method, &bad, None, &none).is_some(),
                "{method} {bad:?}"
            );
        }
        let mut upgrade = bad.clone();
        upgrade.extend(headers(&ws));
        assert!(
            refusal(&Method::GET, &upgrade, None, &none).is_some(),
            "websocket {bad:?}"
        );
        // Reading a page is not a write: the browser keeps another site from seeing it.
        assert_eq!(refusal(&Method::GET, &bad, None, &none), None);
    }
    // An origin with no host to compare it with is no proof of the same site.
    let no_host = headers(&[("origin", "http://127.0.0.1:3000")]);
    assert!(refusal(&Method::POST, &no_host, None, &none).is_some());
    // HTTP/2 names the host in the URI instead of a Host header.
    assert_eq!(
        refusal(&Method::POST, &no_host, Some("127.0.0.1:3000"), &none),
        None
    );
    let mut foreign = headers(&ws);
    foreign.insert(
        header::ORIGIN,
        HeaderValue::from_static("https://portal.example"),
    );
    foreign.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    assert!(refusal(&Method::GET, &foreign, None, &none).is_some());
    let portal = AllowedOrigins::new(["https://portal.example/"]);
    assert_eq!(refusal(&Method::GET, &foreign, None, &portal), None);
}

#[test]
fn submissions_are_limited_per_client_with_the_time_to_wait() {
    let limits = ClientLimits::new(&LimitOptions {
        submit_per_second: 1.try_into().unwrap(),
        submit_burst: 3.try_into().unwrap(),
        ..LimitOptions::default()
    });
    for _ in 0..3 {
        limits.submit("user:a").unwrap();
    }
    assert_eq!(limits.submit("user:a"), Err(1));
    // Another client has its own bucket.
    limits.submit("user:b").unwrap();
}

#[test]
fn live_feeds_are_capped_per_client_and_in_all_and_freed_when_closed() {
    let limits = ClientLimits::new(&LimitOptions {
        feeds_per_client: 2,
        feeds_total: 3,
        ..LimitOptions::default()
    });
    let a1 = limits.open_feed("a").unwrap();
    let a2 = limits.open_feed("a").unwrap();
    assert!(limits.open_feed("a").is_none(), "per client");
    let b1 = limits.open_feed("b").unwrap();
    assert!(limits.open_feed("c").is_none(), "in all");
    assert_eq!(limits.feeds_open(), 3);
    drop((a1, b1));
    assert_eq!(limits.feeds_open(), 1);
    let _c = limits.open_feed("c").unwrap();
    let _a = limits.open_feed("a").unwrap();
    drop(a2);
    assert_eq!(limits.feeds_open(), 2);
}
