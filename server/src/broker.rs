//! The embedded Kafka-compatible broker (Nisshi), run as a child process.
//!
//! Used when the user names no cluster, and by the integration tests. It is a separate program so
//! that the pipeline talks to it over the Kafka protocol exactly as it would to a real cluster.
//! `secure` starts it requiring a SASL/SCRAM login, with the credentials in a private file.

mod log;
mod secure;

pub use secure::{credentials_path, start_secured, CREDENTIALS_FILE, USER};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where the broker keeps its data.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Fast and gone on exit: for tests and benchmarks.
    Memory,
    /// Durable: a SQLite file in this directory, so a restart loses nothing.
    Sqlite(PathBuf),
}

#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub port: u16,
    pub storage: Storage,
    /// Kafka's group.initial.rebalance.delay.ms: how long a new group waits for more members.
    pub initial_rebalance_delay: Duration,
    /// Where the broker's own log goes; discarded when unset.
    pub log_file: Option<PathBuf>,
    /// Require clients to log in with SASL/SCRAM (users kept in the broker's storage; see
    /// `start_secured`).
    pub authentication: bool,
    /// How often the broker deletes records past their topic's `retention.ms` (and compacts);
    /// Nisshi's own default (10 minutes) when unset. See `sweep_interval`.
    pub sweep_every: Option<Duration>,
}

/// How often the embedded broker should sweep for a topic retention of `retention`: a tenth
/// of it, between a second and Nisshi's default of 10 minutes, so a topic holds at most ~10%
/// more than its retention, and a long retention costs no more sweeps than Nisshi's default.
///
/// Nisshi 0.8.1 on SQLite deletes expired records (`retention.ms`, by record timestamp; 7 days
/// for a topic without one) and compacts only in a maintenance sweep, run at start and then every
/// `maintenance_interval` (an option of the storage URL, default 10 minutes). DeleteRecords works
/// too, but the sweep is the broker's own mechanism, so we set its interval rather than delete
/// records ourselves (a real cluster deletes by itself). Measured on 2 cores
/// (`inspect::retention` in the integration tests): a 3 s retention, a 1 s sweep, `churn replay`
/// at 800 records/s for 36 s — 29,700 records written, 2,400–3,200 held at any time, the data
/// dir level at 5.5–5.9 MB from the 8th second on: SQLite reuses the freed pages (its file
/// never shrinks). At steady state a record costs ~330–430 bytes on input, ~660 as a prediction.
pub fn sweep_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

impl BrokerOptions {
    /// A throwaway broker on a free port, for tests.
    pub fn for_tests() -> Self {
        BrokerOptions {
            port: free_port(),
            storage: Storage::Memory,
            initial_rebalance_delay: Duration::from_millis(200),
            log_file: None,
            authentication: false,
            sweep_every: None,
        }
    }
}

/// How often a command checks that its embedded broker still runs (`EmbeddedBroker::exited`).
pub const EXIT_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A running broker; stopped when dropped.
pub struct EmbeddedBroker {
    /// Shared with `shutdown`, which kills it when the process exits without destructors.
    child: Arc<Mutex<Child>>,
    /// Set when we stop it ourselves, so its watchers (`exited`) do not report that exit.
    stopping: Arc<AtomicBool>,
    options: BrokerOptions,
}

/// Finds the broker program: $CHURN_NISSHI, then PATH, then the project's tool cache.
pub fn nisshi_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHURN_NISSHI") {
        return Ok(PathBuf::from(path));
    }
    let tools = std::env::var_os("CHURN_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/customer-churn/tools"))
        });
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(tools.map(|t| t.join("bin")));
    for dir in candidates {
        let candidate = dir.join("nisshi");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "the embedded broker `nisshi` is not installed: run `scripts/setup.sh` (builds it once), \
         set CHURN_NISSHI to its path, or pass --brokers HOST:PORT of an existing Kafka cluster"
    )
}

/// A port nobody listens on right now, for a broker started in a moment.
///
/// Not one the kernel hands out (`bind :0`): those come from the ephemeral range that outgoing
/// connections also draw from, so another client — or a probe connecting to itself — could take
/// it before the broker binds. These come from below that range (Linux: 32768 and up), each
/// different within the process (tests start brokers in parallel), spread apart between processes.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % 600 * 20;
    for _ in 0..SPAN {
        let port = (FIRST + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN)
}

/// True when something accepts connections on 127.0.0.1:port.
pub fn port_in_use(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

impl EmbeddedBroker {
    /// Starts the broker and waits until it accepts connections.
    pub fn start(options: BrokerOptions) -> Result<Self> {
        let binary = nisshi_binary()?;
        if port_in_use(options.port) {
            bail!(
                "port {} is already in use: pick another with --broker-port",
                options.port
            );
        }
        let url = format!("tcp://127.0.0.1:{}", options.port);
        let mut command = Command::new(&binary);
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .arg("--group-initial-rebalance-delay")
            .arg(format!("{}ms", options.initial_rebalance_delay.as_millis()))
            .stdin(Stdio::null());
        // In a `churn` command (it watches the signals): its own process group, so Ctrl-C in a
        // terminal (or systemd's SIGTERM to the group) goes to churn alone, which finishes its
        // commits and publishes *before* it stops the broker; otherwise both stop at once and the
        // last commits are lost. `shutdown` kills it on every other way churn exits. A test or
        // benchmark keeps it in its own group, so a Ctrl-C of `cargo test` ends it too.
        if crate::shutdown::watching_signals() {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        if options.authentication {
            command.arg("--authentication");
        }
        match &options.storage {
            Storage::Memory => {
                command.args(["--storage-engine", "memory://nisshi/"]);
            }
            Storage::Sqlite(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                // Nisshi resolves sqlite paths against its working directory; it takes (and
                // removes) the sweep interval from the storage URL's query.
                let url = match options.sweep_every {
                    Some(every) => format!(
                        "sqlite://nisshi.db?maintenance_interval={}ms",
                        every.as_millis().max(1)
                    ),
                    None => "sqlite://nisshi.db".to_owned(),
                };
                command.current_dir(dir).args(["--storage-engine", &url]);
            }
        }
        match &options.log_file {
            Some(_) => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let log = match &options.log_file {
            Some(path) => Some(log::RotatingLog::open(path, log::MAX_LOG_BYTES)?),
            None => None,
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the embedded broker {}", binary.display()))?;
        if let Some(log) = log {
            let log = Arc::new(Mutex::new(log));
            if let Some(out) = child.stdout.take() {
                log::copy_into(out, log.clone(), "stdout");
            }
            if let Some(err) = child.stderr.take() {
                log::copy_into(err, log, "stderr");
            }
        }
        let child = Arc::new(Mutex::new(child));
        crate::shutdown::end_with_process(&child);
        let mut broker = EmbeddedBroker {
            child,
            stopping: Arc::default(),
            options,
        };
        broker.wait_ready(Duration::from_secs(30))?;
        tracing::info!(address = %broker.address(), storage = ?broker.options.storage,
            authentication = broker.options.authentication, "embedded broker up");
        Ok(broker)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Ctrl-C while the broker starts: stop waiting (dropping `self` kills it).
            if crate::shutdown::stop_requested() {
                return Err(crate::shutdown::StoppedDuringStartUp.into());
            }
            let exited = self.child().try_wait()?;
            if let Some(status) = exited {
                bail!(
                    "the embedded broker exited at start ({status}){}",
                    self.log_hint()
                );
            }
            if port_in_use(self.options.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the embedded broker did not open port {} within {timeout:?}",
                    self.options.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// "; see <its log>" when it has one.
    fn log_hint(&self) -> String {
        self.options
            .log_file
            .as_ref()
            .map(|p| format!("; see {}", p.display()))
            .unwrap_or_default()
    }

    /// Resolves when the broker process ends on its own (killed, crashed, out of disk), with
    /// what to tell the operator. A command that runs the broker watches this and fails, exiting
    /// non-zero, rather than living on beside a dead broker (`churn broker` once did, for as long
    /// as nobody looked). Checked every `EXIT_CHECK_EVERY`. Never resolves for an exit that is
    /// part of a stop: ours (`stop`, `restart`, drop), or the process's own stop — systemd's
    /// default `KillMode=control-group` sends SIGTERM to the broker too, and it may go first, so
    /// an exit is reported only if no stop was asked for within `EXIT_CHECK_EVERY` after it.
    pub fn exited(&self) -> impl std::future::Future<Output = anyhow::Error> + Send + 'static {
        let (child, stopping) = (self.child.clone(), self.stopping.clone());
        let hint = self.log_hint();
        async move {
            let error = loop {
                // A lock held for an instant: `try_wait` does not block.
                let status = child.lock().unwrap_or_else(|e| e.into_inner()).try_wait();
                match status {
                    Ok(Some(status)) => {
                        break anyhow::anyhow!(
                            "the embedded broker exited on its own ({status}){hint}"
                        )
                    }
                    Err(e) => break anyhow::anyhow!("cannot watch the embedded broker: {e}"),
                    Ok(None) => tokio::time::sleep(EXIT_CHECK_EVERY).await,
                }
            };
            tokio::time::sleep(EXIT_CHECK_EVERY).await;
            if stopping.load(Ordering::SeqCst) || crate::shutdown::stop_requested() {
                std::future::pending::<()>().await;
            }
            error
        }
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bootstrap address for clients.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.options.port)
    }

    /// The broker process's id (for watching its memory).
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    pub fn options(&self) -> &BrokerOptions {
        &self.options
    }

    /// Stops the broker (SIGKILL: its storage is transactional) and waits for it to exit.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops and starts again on the same port and storage: a broker restart.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_in_use(self.options.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        *self = EmbeddedBroker::start(self.options.clone())?;
        Ok(())
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: std::collections::HashSet<u16> = (0..200).map(|_| super::free_port()).collect();
        assert_eq!(ports.len(), 200);
        assert!(ports.iter().all(|&p| (20_000..32_000).contains(&p)));
    }

    #[test]
    fn the_sweep_runs_at_a_tenth_of_the_retention_within_bounds() {
        use std::time::Duration;
        let sweep = |secs| super::sweep_interval(Duration::from_secs(secs));
        assert_eq!(
            sweep(1),
            Duration::from_secs(1),
            "never more than once a second"
        );
        assert_eq!(sweep(30), Duration::from_secs(3));
        assert_eq!(sweep(3600), Duration::from_secs(360));
        assert_eq!(
            sweep(7 * 24 * 3600),
            Duration::from_secs(600),
            "Nisshi's default at most"
        );
    }
}
