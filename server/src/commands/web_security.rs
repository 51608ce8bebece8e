//! `churn serve`'s flags for what the web server refuses and how it speaks (HTTPS).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use server::args;
use server::web::guard::{AllowedHosts, AllowedOrigins, LimitOptions};
use server::web::{ConnectionLimits, GuardOptions, TlsFiles, WebOptions};

#[derive(clap::Args)]
pub struct WebSecurityArgs {
    /// Host names the app answers to, besides IP addresses and localhost (against DNS
    /// rebinding): e.g. churn.example.com, or .example.com for a domain and its subdomains, or *.
    #[arg(long, env = "CHURN_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Other sites whose pages may post to this one or open its live feed, e.g.
    /// https://portal.example.com. By default only the app's own pages may.
    #[arg(long, env = "CHURN_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Submissions per second per user, token or (anonymous) address; more get 429.
    #[arg(long, default_value_t = LimitOptions::default().submit_per_second)]
    submit_rate: NonZeroU32,
    /// Submissions a client may send at once after a quiet spell.
    #[arg(long, default_value_t = LimitOptions::default().submit_burst)]
    submit_burst: NonZeroU32,
    /// Live-feed connections per user, token or address.
    #[arg(long, default_value_t = LimitOptions::default().feeds_per_client)]
    max_feeds_per_client: usize,
    /// Live-feed connections in all.
    #[arg(long, default_value_t = LimitOptions::default().feeds_total)]
    max_feeds: usize,
    /// Open connections in all; more are closed at once.
    #[arg(long, default_value_t = ConnectionLimits::default().total)]
    max_connections: usize,
    /// Open connections per client address (behind a reverse proxy, all come from the proxy).
    #[arg(long, default_value_t = ConnectionLimits::default().per_address)]
    max_connections_per_address: usize,
    /// Seconds a request may take, body included, before it is answered 408.
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true, value_parser = args::positive_seconds)]
    request_timeout: f64,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "CHURN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(long, env = "CHURN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl WebSecurityArgs {
    /// Fills in the web server's protections and HTTPS from the flags.
    pub fn apply(&self, options: &mut WebOptions) {
        options.tls = self
            .tls_cert
            .clone()
            .zip(self.tls_key.clone())
            .map(|(cert, key)| TlsFiles { cert, key });
        options.guard = GuardOptions {
            allowed_hosts: AllowedHosts::new(&self.allowed_hosts),
            allowed_origins: AllowedOrigins::new(&self.allowed_origins),
            limits: LimitOptions {
                submit_per_second: self.submit_rate,
                submit_burst: self.submit_burst,
                feeds_per_client: self.max_feeds_per_client,
                feeds_total: self.max_feeds,
            },
            request_timeout: Duration::from_secs_f64(self.request_timeout),
            https: options.tls.is_some(),
        };
        let defaults = ConnectionLimits::default();
        options.connections = ConnectionLimits {
            total: self.max_connections,
            per_address: self.max_connections_per_address,
            // A quiet request must get its 408 before the connection counts as idle.
            idle_timeout: defaults
                .idle_timeout
                .max(Duration::from_secs_f64(self.request_timeout) + Duration::from_secs(5)),
            ..defaults
        };
    }
}
