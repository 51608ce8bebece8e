//! Where the web server meets the network: the socket, HTTPS (rustls) when given a certificate,
//! and the limits on connections themselves — in all and per address, how long a client may
//! take to send its headers and how long a connection may stay quiet — so slow, idle or numerous
//! clients cannot hold the server's sockets.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::Handle;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The certificate chain and private key for HTTPS, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub total: usize,
    /// Per client address. Behind a reverse proxy every connection comes from the proxy: raise it.
    pub per_address: usize,
    /// A client that has not sent a request's headers within this time is disconnected; this
    /// also ends idle keep-alive connections.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed, whatever it
    /// speaks: a quiet HTTP/2 connection (hyper has no idle timeout for it) or a stuck upgrade.
    /// Live feeds get a message every second or two, so they never reach it. A client that
    /// sends a byte now and then keeps its connection: the per-address caps bound those.
    /// At least `--request-timeout` + 5 s, so a slow request gets its 408 first.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            total: 4_096,
            // A browser opens 6 connections per site, plus websockets for a few tabs.
            per_address: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The address a client is counted by in every per-client limit (connections, sign-ins,
/// submissions): an IPv4 address, or an IPv6 address's /64 — one subscriber usually holds a whole
/// /64, so counting /128s would give one attacker 2^64 fresh budgets.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// How long open requests get to finish at a stop before their connections are closed.
const DRAIN: Duration = Duration::from_secs(3);

/// Serves `app` on `listener` (HTTPS with `tls`) until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<&TlsFiles>,
    limits: &ConnectionLimits,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = listener.into_std().context("taking the web socket")?;
    let handle = Handle::new();
    let stop = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.graceful_shutdown(Some(DRAIN));
    });
    let acceptor = Limited::new(limits);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(acceptor)
                .handle(handle);
            configure(server.http_builder(), limits);
            server.serve(service).await
        }
        Some(tls) => {
            let config = rustls_config(tls).await?;
            let mut server = axum_server::from_tcp(listener)
                .acceptor(RustlsAcceptor::new(config).acceptor(acceptor))
                .handle(handle);
            configure(server.http_builder(), limits);
            server.serve(service).await
        }
    };
    served.context("web server failed")
}

fn configure(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &ConnectionLimits,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // No HTTP/2 keep-alive pings: a client answering them would count as busy for ever; the
    // idle timeout on the connection itself ends quiet HTTP/2 connections instead.
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(None);
}

/// Reads the certificate and key, failing with what to do about it.
pub async fn rustls_config(tls: &TlsFiles) -> Result<RustlsConfig> {
    // One crypto provider for the process (ring: no C toolchain or cmake needed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .with_context(|| {
            format!(
                "cannot use the certificate {} with the key {}: both must be PEM files, the key \
                 PKCS#8, PKCS#1 or SEC1",
                tls.cert.display(),
                tls.key.display()
            )
        })
}

/// Counts open connections, refusing (closing at once) those over a limit.
#[derive(Clone)]
struct Limited {
    open: Arc<Mutex<Open>>,
    limits: Arc<ConnectionLimits>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Limited {
    fn new(limits: &ConnectionLimits) -> Limited {
        Limited {
            open: Arc::default(),
            limits: Arc::new(limits.clone()),
        }
    }

    fn admit(&self, address: IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock().expect("connection counts");
        let from_address = open.per_address.get(&address).copied().unwrap_or(0);
        if open.total >= self.limits.total || from_address >= self.limits.per_address {
            return None;
        }
        open.total += 1;
        *open.per_address.entry(address).or_default() += 1;
        Some(Admitted {
            open: self.open.clone(),
            address,
        })
    }
}

/// One admitted connection; dropping it (the connection closed) frees its place.
struct Admitted {
    open: Arc<Mutex<Open>>,
    address: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&self.address);
            }
        }
    }
}

/// A connection that holds its place while it is open.
pub struct LimitedStream {
    inner: TcpStream,
    _admitted: Admitted,
    idle: Duration,
    /// When the connection counts as idle: moved on by every byte read or written.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl LimitedStream {
    fn new(inner: TcpStream, admitted: Admitted, idle: Duration) -> LimitedStream {
        LimitedStream {
            inner,
            _admitted: admitted,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// After a pending read or write: the error that closes a connection quiet for too long.
    fn idle_expired(&mut self, cx: &mut TaskContext<'_>) -> Option<io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| {
            tracing::debug!("closed a connection idle for {:?}", self.idle);
            io::Error::new(io::ErrorKind::TimedOut, "connection idle")
        })
    }

    /// `poll`'s answer, noting progress or closing an idle connection.
    fn track<T>(
        &mut self,
        cx: &mut TaskContext<'_>,
        poll: Poll<io::Result<T>>,
        progressed: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(Ok(value)) => {
                if progressed(&value) {
                    self.moved();
                }
                Poll::Ready(Ok(value))
            }
            Poll::Pending => match self.idle_expired(cx) {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for Limited {
    type Stream = LimitedStream;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(LimitedStream, S)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let idle = self.limits.idle_timeout;
        let admitted = stream
            .peer_addr()
            .ok()
            .and_then(|peer| self.admit(client_network(peer.ip())));
        Box::pin(async move {
            let Some(admitted) = admitted else {
                tracing::debug!("refused a connection: too many open");
                return Err(io::Error::other("too many connections"));
            };
            let (stream, service) = DefaultAcceptor.accept(stream, service).await?;
            Ok((LimitedStream::new(stream, admitted, idle), service))
        })
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() > before;
        self.track(cx, poll, |_| read)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, poll, |n| *n > 0)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, poll, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
