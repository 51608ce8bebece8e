//! Clean stops of the real `churn` binary: every long-running command (`serve`, `score`,
//! `analyze`, `replay`) exits within `STOP_BOUND` of SIGTERM with code 0 and its final counts in
//! the log, even with the broker killed first, and during start-up with no broker at all; a
//! second SIGTERM exits at once, non-zero; a task that fails makes the exit non-zero.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

/// What the issue asks: stopped within 10 s of the signal, whatever the broker is doing.
const STOP_BOUND: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(120);

/// A `churn` child process logging (stdout and stderr) to its own file.
struct Child {
    name: &'static str,
    process: Running,
    log: PathBuf,
}

impl Child {
    fn start(p: &Pipeline, name: &'static str, args: &[&str]) -> Child {
        let log = p.dir.path().join(format!("{name}.log"));
        let process = churn_logging_to(args, &log);
        Child { name, process, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        assert!(
            self.process.0.try_wait().unwrap().is_none(),
            "{} is running\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Waits for the exit after a signal sent at `sent`: the status and how long it took.
    fn exit_within(
        &mut self,
        sent: Instant,
        bound: Duration,
    ) -> (std::process::ExitStatus, Duration) {
        let left = bound.saturating_sub(sent.elapsed());
        let status = wait_exit(&mut self.process.0, left).unwrap_or_else(|| {
            panic!(
                "{}: still running {bound:?} after the signal\n{}",
                self.name,
                self.log_text()
            )
        });
        (status, sent.elapsed())
    }

    /// The log line that says `what` (e.g. "scorer stopped"), which must carry every `fields`
    /// entry as `name=number`.
    fn final_counts(&self, what: &str, fields: &[&str]) -> String {
        let text = self.log_text();
        let line = text
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{}: no {what:?} line\n{text}", self.name))
            .to_owned();
        for field in fields {
            let value = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix(&format!("{field}=")))
                .unwrap_or_else(|| panic!("{}: {what:?} without {field}=: {line}", self.name));
            assert!(
                value.parse::<u64>().is_ok(),
                "{}: {field}={value} is no count: {line}",
                self.name
            );
        }
        line
    }
}

fn count_of(line: &str, field: &str) -> u64 {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{field}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field}= in {line}"))
}

/// `churn ARGS` running, its stdout and stderr in `log`.
fn churn_logging_to(args: &[&str], log: &Path) -> Running {
    let file = std::fs::File::create(log).unwrap();
    churn(args)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .map(Running)
        .unwrap()
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What happens to the broker before the stop.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL: connections refused from then on.
    Killed,
    /// SIGSTOP: connections stay open and nothing answers (a hung broker).
    Frozen,
}

fn break_broker(p: &mut Pipeline, fault: Fault) {
    match fault {
        Fault::Killed => tokio::task::block_in_place(|| p.broker.stop()),
        Fault::Frozen => {
            let status = std::process::Command::new("kill")
                .args(["-STOP", &p.broker.pid().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
}

/// `churn replay`, `churn score` and `churn analyze` at work on one broker; the broker is killed
/// (SIGKILL, mid-stream: the replay still sends, the scorer still scores), then each process gets
/// SIGTERM: each exits 0 within the bound, logging its final counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_score_and_analyze_stop_within_10_s_of_sigterm_with_the_broker_killed_first() {
    replay_score_and_analyze_stop_within_the_bound(Fault::Killed).await;
}

/// The same with the broker frozen (SIGSTOP) rather than gone: every request waits for an answer
/// that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_score_and_analyze_stop_within_10_s_of_sigterm_with_the_broker_frozen() {
    replay_score_and_analyze_stop_within_the_bound(Fault::Frozen).await;
}

async fn replay_score_and_analyze_stop_within_the_bound(fault: Fault) {
    let mut p = pipeline().await;
    let model = model_path(&p, 41);
    let csv = path(&p.csv(2_000, 41));
    let brokers = p.kafka.brokers.clone();
    let mut replay = Child::start(
        &p,
        "replay",
        &[
            "replay",
            &csv,
            "--brokers",
            &brokers,
            "--rate",
            "1000",
            "--loop",
        ],
    );
    let mut score = Child::start(
        &p,
        "score",
        &[
            "score",
            "--brokers",
            &brokers,
            "--model",
            &model,
            "--group",
            "stops-scorer",
        ],
    );
    let mut analyze = Child::start(
        &p,
        "analyze",
        &[
            "analyze",
            "--brokers",
            &brokers,
            "--model",
            &model,
            "--window-secs",
            "1",
            "--lateness-secs",
            "0",
        ],
    );
    let (predictions, stats) = (
        p.kafka.topics.predictions.clone(),
        p.kafka.topics.stats.clone(),
    );
    wait_until("predictions and window stats to flow", TIMEOUT, || {
        topic_size(&p.kafka, &predictions) >= 1_000 && topic_size(&p.kafka, &stats) >= 15
    })
    .await;
    break_broker(&mut p, fault);
    // Long enough for every client to notice; the replay keeps queueing meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for child in [&mut replay, &mut score, &mut analyze] {
        child.assert_running();
    }
    let sent = Instant::now();
    for child in [&replay, &score, &analyze] {
        signal(&child.process.0, "TERM");
    }
    for child in [&mut replay, &mut score, &mut analyze] {
        let (status, took) = child.exit_within(sent, STOP_BOUND);
        eprintln!(
            "{} with the broker {fault:?}: {status} after {took:.1?}",
            child.name
        );
        assert!(
            status.success(),
            "{}: exit 0 on SIGTERM, got {status}\n{}",
            child.name,
            child.log_text()
        );
    }
    let replayed = replay.final_counts("replay stopped", &["sent", "unconfirmed"]);
    assert!(
        count_of(&replayed, "sent") >= 1_000 && count_of(&replayed, "unconfirmed") > 0,
        "the replay says what it sent and what the broker never confirmed: {replayed}"
    );
    assert!(
        replay.log_text().contains("not confirmed by the broker"),
        "the replay says what was abandoned\n{}",
        replay.log_text()
    );
    let scored = score.final_counts(
        "scorer stopped",
        &["read", "scored", "dead_lettered", "produced"],
    );
    assert!(count_of(&scored, "scored") >= 1_000, "{scored}");
    assert!(
        count_of(&scored, "read") >= count_of(&scored, "scored"),
        "{scored}"
    );
    let analyzed = analyze.final_counts("stream analytics stopped", &["read", "published"]);
    assert!(
        count_of(&analyzed, "read") > 0,
        "{analyzed}\n{}",
        analyze
            .log_text()
            .lines()
            .filter(|l| !l.contains("librdkafka"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(count_of(&analyzed, "published") >= 1, "{analyzed}");
}

/// `churn serve` with its in-process scorer, analytics and replay: the broker is killed, then
/// SIGTERM: exit 0 within the bound, with each part's final counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_stops_within_10_s_of_sigterm_with_the_broker_killed_first() {
    serve_stops_within_the_bound(Fault::Killed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_stops_within_10_s_of_sigterm_with_the_broker_frozen() {
    serve_stops_within_the_bound(Fault::Frozen).await;
}

async fn serve_stops_within_the_bound(fault: Fault) {
    let mut p = pipeline().await;
    let model = model_path(&p, 42);
    let csv = path(&p.csv(2_000, 42));
    let port = server::broker::free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let (site, data) = (
        path(&p.dir.path().join("site")),
        path(&p.dir.path().join("data")),
    );
    let brokers = p.kafka.brokers.clone();
    let mut serve = Child::start(
        &p,
        "serve",
        &[
            "serve",
            "--brokers",
            &brokers,
            "--addr",
            &addr,
            "--site-root",
            &site,
            "--data-dir",
            &data,
            "--model",
            &model,
            "--replay",
            &csv,
            "--replay-rate",
            "1000",
            "--window-secs",
            "1",
            "--instance-id",
            "stops-web",
        ],
    );
    let (predictions, stats) = (
        p.kafka.topics.predictions.clone(),
        p.kafka.topics.stats.clone(),
    );
    wait_until("predictions and window stats to flow", TIMEOUT, || {
        topic_size(&p.kafka, &predictions) >= 1_000 && topic_size(&p.kafka, &stats) >= 15
    })
    .await;
    break_broker(&mut p, fault);
    tokio::time::sleep(Duration::from_secs(2)).await;
    serve.assert_running();
    let sent = Instant::now();
    signal(&serve.process.0, "TERM");
    let (status, took) = serve.exit_within(sent, STOP_BOUND);
    eprintln!("serve with the broker {fault:?}: {status} after {took:.1?}");
    assert!(
        status.success(),
        "serve: exit 0 on SIGTERM, got {status}\n{}",
        serve.log_text()
    );
    serve.final_counts(
        "scorer stopped",
        &["read", "scored", "dead_lettered", "produced"],
    );
    serve.final_counts("stream analytics stopped", &["read", "published"]);
    serve.final_counts("replay stopped", &["sent", "unconfirmed"]);
}

/// With no broker anywhere, every command waits for one at start-up (up to 10-15 s); SIGTERM then
/// ends it at once, cleanly (exit 0: the stop was asked for, nothing failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_with_no_broker_stops_every_command_at_once() {
    let nowhere = format!("127.0.0.1:{}", server::broker::free_port());
    stop_every_command_during_start_up(&nowhere).await;
}

/// The same with a broker that accepts connections and never answers (a hung broker, a
/// black-holing proxy): nothing waits for it past the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_with_a_broker_that_never_answers_stops_every_command_at_once() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        // Held open, never read from or written to.
        let mut held = Vec::new();
        for connection in silent.incoming() {
            held.push(connection);
        }
    });
    stop_every_command_during_start_up(&address).await;
}

/// Starts `score`, `analyze`, `replay` and `serve` against `brokers`, lets them wait 1.5 s for it,
/// then SIGTERM: each exits 0 within 3 s, saying it stopped during start-up.
async fn stop_every_command_during_start_up(nowhere: &str) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("customers.csv");
    std::fs::write(
        &csv,
        model::synth::generate_csv(&model::synth::GenerateOptions {
            rows: 10,
            seed: 1,
            messy_fraction: 0.0,
        }),
    )
    .unwrap();
    let (site, data) = (
        path(&dir.path().join("site")),
        path(&dir.path().join("data")),
    );
    let addr = format!("127.0.0.1:{}", server::broker::free_port());
    let commands: [(&str, Vec<&str>); 4] = [
        ("score", vec!["score", "--group", "g"]),
        ("analyze", vec!["analyze"]),
        ("replay", vec!["replay", csv.to_str().unwrap()]),
        (
            "serve",
            vec![
                "serve",
                "--addr",
                &addr,
                "--site-root",
                &site,
                "--data-dir",
                &data,
            ],
        ),
    ];
    let mut children: Vec<(&str, Running, PathBuf)> = commands
        .iter()
        .map(|(name, args)| {
            let log = dir.path().join(format!("{name}.log"));
            let mut args = args.clone();
            args.extend(["--brokers", nowhere]);
            let process = churn_logging_to(&args, &log);
            (*name, process, log)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, child, log) in &mut children {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "{name} still waits for a broker\n{}",
            std::fs::read_to_string(&*log).unwrap_or_default()
        );
    }
    let sent = Instant::now();
    for (_, child, _) in &children {
        signal(&child.0, "TERM");
    }
    for (name, child, log) in &mut children {
        let status = wait_exit(&mut child.0, Duration::from_secs(3)).unwrap_or_else(|| {
            panic!(
                "{name}: still starting 3 s after SIGTERM\n{}",
                std::fs::read_to_string(&*log).unwrap_or_default()
            )
        });
        let text = std::fs::read_to_string(&*log).unwrap_or_default();
        eprintln!(
            "{name} during start-up: {status} after {:.1?}",
            sent.elapsed()
        );
        assert!(status.success(), "{name}: exit 0, got {status}\n{text}");
        assert!(
            text.contains("stopped during start-up"),
            "{name} says where it stopped\n{text}"
        );
    }
}

/// A stop that takes a while (the broker is gone: the final commit goes unanswered) is cut short
/// by a second SIGTERM: the process exits at once, with 130, saying what that means.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once_with_a_non_zero_code() {
    let mut p = pipeline().await;
    let model = model_path(&p, 43);
    let csv = path(&p.csv(500, 43));
    let brokers = p.kafka.brokers.clone();
    let mut replay = Child::start(
        &p,
        "replay",
        &[
            "replay",
            &csv,
            "--brokers",
            &brokers,
            "--rate",
            "500",
            "--loop",
        ],
    );
    let predictions = p.kafka.topics.predictions.clone();
    let input = p.kafka.topics.input.clone();
    wait_until("records to arrive", TIMEOUT, || {
        topic_size(&p.kafka, &input) >= 200
    })
    .await;
    let mut score = Child::start(
        &p,
        "score",
        &[
            "score",
            "--brokers",
            &brokers,
            "--model",
            &model,
            "--group",
            "twice",
        ],
    );
    wait_until("records to be scored", TIMEOUT, || {
        topic_size(&p.kafka, &predictions) >= 200
    })
    .await;
    tokio::task::block_in_place(|| p.broker.stop());
    tokio::time::sleep(Duration::from_secs(1)).await;
    for child in [&replay, &score] {
        signal(&child.process.0, "TERM");
    }
    // The first stop now waits (boundedly) for the broker; the second signal cuts it short.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = Instant::now();
    for child in [&replay, &score] {
        signal(&child.process.0, "TERM");
    }
    for child in [&mut replay, &mut score] {
        let (status, took) = child.exit_within(second, Duration::from_secs(1));
        eprintln!(
            "{} after a second SIGTERM: {status} after {took:.2?}",
            child.name
        );
        assert_eq!(
            status.code(),
            Some(130),
            "{}: {status}\n{}",
            child.name,
            child.log_text()
        );
        assert!(
            child.log_text().contains("stopped at once"),
            "{} says so\n{}",
            child.name,
            child.log_text()
        );
    }
}

/// A task that fails (here the analytics consumer, refused an empty group id) stops the command
/// with a non-zero exit code, naming the task: never a silent exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_makes_the_command_exit_non_zero() {
    let p = pipeline().await;
    let model = model_path(&p, 44);
    let brokers = p.kafka.brokers.clone();
    let mut analyze = Child::start(
        &p,
        "analyze",
        &[
            "analyze",
            "--brokers",
            &brokers,
            "--model",
            &model,
            "--group",
            "",
        ],
    );
    let started = Instant::now();
    let (status, _) = analyze.exit_within(started, Duration::from_secs(30));
    let text = analyze.log_text();
    assert!(
        !status.success(),
        "non-zero when a task failed: {status}\n{text}"
    );
    assert!(text.contains("analytics failed"), "names the task\n{text}");
}

/// The embedded broker is a child process: however `churn` ends — a clean stop, or a second
/// signal that exits at once and skips every destructor — the broker goes with it, so its port
/// and data dir are free for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_never_outlives_churn() {
    for pause in [Duration::from_millis(0), Duration::from_millis(400)] {
        let dir = tempfile::tempdir().unwrap();
        let port = server::broker::free_port();
        let log = dir.path().join("churn.log");
        let data_dir = dir.path().display().to_string();
        let port_text = port.to_string();
        let args = [
            "broker",
            "--data-dir",
            &data_dir,
            "--broker-port",
            &port_text,
        ];
        let mut process = churn_logging_to(&args, &log);
        wait_until("the broker's port", TIMEOUT, || {
            server::broker::port_in_use(port)
        })
        .await;
        // Two signals: at once (the process exits without destructors), or apart (a clean stop
        // may win the race); either way the broker must be gone.
        signal(&process.0, "TERM");
        tokio::time::sleep(pause).await;
        signal(&process.0, "TERM");
        let status = wait_exit(&mut process.0, STOP_BOUND).expect("churn exits");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            matches!(status.code(), Some(0) | Some(130)),
            "{status}\n{text}"
        );
        wait_until("the broker's port to close", Duration::from_secs(5), || {
            !server::broker::port_in_use(port)
        })
        .await;
    }
}

/// `churn COMMAND` (`broker` or `serve`) running its own embedded broker, up and past its
/// start-up: `serve` answers HTTP once its tasks run; `broker` says the pipeline's topics exist.
/// Its broker is killed with it if the test fails.
struct WithBroker {
    command: &'static str,
    process: Running,
    broker: u32,
    broker_port: u16,
    log: PathBuf,
}

impl WithBroker {
    async fn start(dir: &Path, command: &'static str) -> WithBroker {
        let model = dir.join("model.json");
        if !model.exists() {
            server::model_store::save(&trained_model(45), &model).unwrap();
        }
        let data_dir = dir.join(command);
        let web = format!("127.0.0.1:{}", server::broker::free_port());
        let log = dir.join(format!("{command}.log"));
        let broker_port = server::broker::free_port();
        let (data, port, site, model) = (
            path(&data_dir),
            broker_port.to_string(),
            path(&data_dir.join("site")),
            path(&model),
        );
        let mut args = vec![command, "--data-dir", &data, "--broker-port", &port];
        if command == "serve" {
            args.extend(["--addr", &web, "--site-root", &site, "--model", &model]);
        }
        let process = churn_logging_to(&args, &log);
        let mut started = WithBroker {
            command,
            process,
            broker: 0,
            broker_port,
            log,
        };
        wait_until("the command to be up", TIMEOUT, || match command {
            "serve" => std::net::TcpStream::connect(&web).is_ok(),
            _ => started.text().contains("topics exist"),
        })
        .await;
        started.broker = child_named(started.process.0.id(), "nisshi")
            .unwrap_or_else(|| panic!("{command}: no nisshi child\n{}", started.text()));
        started
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal_broker(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.broker.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, within the stop bound.
    fn exit(&mut self) -> std::process::ExitStatus {
        wait_exit(&mut self.process.0, STOP_BOUND).unwrap_or_else(|| {
            panic!(
                "{}: still running after {STOP_BOUND:?}\n{}",
                self.command,
                self.text()
            )
        })
    }
}

impl Drop for WithBroker {
    fn drop(&mut self) {
        if self.broker != 0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.broker.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The embedded broker dying on its own (here SIGKILLed) fails the command that runs it: `churn
/// broker` and `churn serve` exit 1 (a failed task), saying the broker exited, rather than living
/// on beside a dead broker (`churn broker` once did, indefinitely).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_embedded_broker_fails_churn_broker_and_serve_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["broker", "serve"] {
        let mut running = WithBroker::start(dir.path(), command).await;
        let killed = Instant::now();
        running.signal_broker("KILL");
        let status = running.exit();
        eprintln!(
            "{command}: {status} {:.1?} after its broker died",
            killed.elapsed()
        );
        let text = running.text();
        assert_eq!(
            status.code(),
            Some(1),
            "{command}: exit 1, got {status}\n{text}"
        );
        assert!(
            text.contains("the embedded broker exited on its own"),
            "{command}: says why\n{text}"
        );
    }
}

/// systemd's default `KillMode=control-group` sends SIGTERM to every process of the unit at once:
/// the broker may exit first, and that is part of the stop, not a failure (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_churn_and_its_broker_together_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["broker", "serve"] {
        let mut running = WithBroker::start(dir.path(), command).await;
        // The broker first, as the race may have it; churn a moment later.
        running.signal_broker("TERM");
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal(&running.process.0, "TERM");
        let status = running.exit();
        let text = running.text();
        assert!(status.success(), "{command}: exit 0, got {status}\n{text}");
        assert!(
            !text.contains("exited on its own"),
            "{command}: a stop is not a failure\n{text}"
        );
    }
}

/// Closing the terminal or SSH session (SIGHUP) is a clean stop too: exit 0 after the last
/// commits, and the embedded broker (in its own process group, so not hung up itself) goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_a_clean_stop_and_the_broker_goes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = WithBroker::start(dir.path(), "broker").await;
    signal(&running.process.0, "HUP");
    let status = running.exit();
    assert!(status.success(), "exit 0, got {status}\n{}", running.text());
    let port = running.broker_port;
    wait_until("the broker's port to close", Duration::from_secs(5), || {
        !server::broker::port_in_use(port)
    })
    .await;
}

/// The id of `parent`'s child process whose command name is `name`.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": the name may hold spaces, so split at the last ')'.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (comm == name && ppid == parent).then_some(pid)
        })
}
