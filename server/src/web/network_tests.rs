//! The web server on a real socket: what slow, numerous or foreign clients get, live-feed
//! limits over real websockets, and HTTPS. The router's answers are tested in `web::tests`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::listener::{serve, ConnectionLimits, TlsFiles};
use super::tests::{fake_router_with, test_options};
use super::WebOptions;

/// A running server; stopped when dropped.
struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start((options, bearer): (WebOptions, String)) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let router = fake_router_with(&options, bearer);
    let (tls, limits, token) = (
        options.tls.clone(),
        options.connections.clone(),
        stop.clone(),
    );
    tokio::spawn(async move { serve(listener, router, tls.as_ref(), &limits, token).await });
    Running { addr, stop }
}

/// Options with `limits`, and the API token every request will carry.
fn options(limits: ConnectionLimits) -> (WebOptions, String) {
    let (mut options, bearer) = test_options(false);
    options.connections = limits;
    (options, bearer)
}

/// Reads until the server closes the connection (or `within` passes): what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&all).into_owned()),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_or_idles_is_disconnected() {
    let server = start(options(ConnectionLimits {
        header_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    }))
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a half-sent request is not held open"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A keep-alive connection that goes quiet after its answer is closed too.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(5))
        .await
        .expect("closed when idle");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_quiet_http2_connection_is_closed_though_hyper_would_keep_it() {
    let server = start(options(ConnectionLimits {
        idle_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    }))
    .await;
    // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame, then silence. The
    // header timeout is HTTP/1's only; without the idle timeout this would be held for ever.
    let mut quiet = TcpStream::connect(server.addr).await.unwrap();
    quiet
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let started = Instant::now();
    let sent = read_until_closed(&mut quiet, Duration::from_secs(5)).await;
    assert!(sent.is_some(), "a quiet HTTP/2 connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(
        !sent.unwrap().is_empty(),
        "it was served (the server's SETTINGS) before going quiet"
    );

    // A connection that keeps talking stays open past the idle timeout.
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..4 {
        busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = busy.read(&mut buf).await.unwrap();
        assert!(n > 0 && buf.starts_with(b"HTTP/1.1 200"), "still served");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn connections_over_the_limit_per_address_are_closed_and_freed_when_others_end() {
    let server = start(options(ConnectionLimits {
        per_address: 2,
        ..ConnectionLimits::default()
    }))
    .await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut third, Duration::from_secs(2))
        .await
        .expect("closed at once");
    assert_eq!(answer, "", "no answer over the limit");
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(server.addr).await.unwrap();
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut again, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Opens the live feed's websocket; the status line of the answer.
async fn open_feed(addr: SocketAddr, origin: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        <app::api::LiveFeed as leptos::server_fn::ServerFn>::PATH
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let status = String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (stream, status)
}

#[tokio::test]
async fn live_feeds_are_capped_per_client_over_real_websockets_and_freed_on_close() {
    let mut options = options(ConnectionLimits::default());
    options.0.guard.limits.feeds_per_client = 2;
    let server = start(options).await;
    let own = format!("http://{}", server.addr);
    let (first, status) = open_feed(server.addr, &own).await;
    assert!(status.contains("101"), "{status}");
    let (_second, status) = open_feed(server.addr, &own).await;
    assert!(status.contains("101"), "{status}");
    let (_, status) = open_feed(server.addr, &own).await;
    assert!(status.contains("429"), "{status}");
    let (_, status) = open_feed(server.addr, "http://evil.example").await;
    assert!(status.contains("403"), "{status}");
    drop(first);
    // The feed notices the browser is gone and frees its slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_stream, status) = open_feed(server.addr, &own).await;
        if status.contains("101") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never freed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn https_serves_with_the_given_certificate_and_tells_browsers_to_keep_to_it() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut options = options(ConnectionLimits::default());
    options.0.tls = Some(TlsFiles {
        cert: fixtures.join("tls-cert.pem"),
        key: fixtures.join("tls-key.pem"),
    });
    options.0.guard.https = true;
    let server = start(options).await;
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    let cert = fixtures.join("tls-cert.pem");
    let output = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--include",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(&cert)
        .arg(&url)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).to_lowercase();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("strict-transport-security: max-age="),
        "{text}"
    );
    assert!(text.trim_end().ends_with("ok"), "{text}");
    // Plain HTTP to the HTTPS port gets no page.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut plain, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(!answer.contains("ok"), "{answer}");
}

#[tokio::test]
async fn a_missing_or_unreadable_certificate_fails_with_what_to_do() {
    let tls = TlsFiles {
        cert: "/nonexistent/cert.pem".into(),
        key: "/nonexistent/key.pem".into(),
    };
    let error = super::listener::rustls_config(&tls)
        .await
        .expect_err("refused");
    assert!(
        format!("{error:#}").contains("must be PEM files"),
        "{error:#}"
    );
}
