//! Secrets and integrity: the embedded broker requiring a login (`churn broker --secure`, `churn
//! serve --secure-broker`), every command logging in with `--kafka-properties FILE`, clients
//! without the right login turned away fast and clearly, and no secret on a command line, in a
//! help text or in a log.

mod command_line;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use model::synth::{generate_csv, GenerateOptions};
use server::broker::{free_port, port_in_use};
use server::kafka::{properties, Kafka};

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(60);
/// A refused client must say so well before the 10 s a missing broker takes.
const FAST: Duration = Duration::from_secs(6);

/// The password in a credentials file.
fn password_in(file: &Path) -> String {
    properties::read_file(file)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == "sasl.password")
        .expect("a sasl.password")
        .1
}

fn mode(file: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).unwrap().permissions().mode() & 0o777
}

/// `args` with the login flags after them.
fn joined<'a>(login: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    [args, login].concat()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `churn` process with stdout and stderr appended to `log`.
fn spawn_logged(args: &[&str], log: &Path) -> Running {
    let file = || {
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap()
    };
    churn(args)
        .stdout(file())
        .stderr(file())
        .spawn()
        .map(Running)
        .unwrap()
}

/// Runs a `churn` command to its end: (success, stderr, how long it took).
fn run(args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let output = churn(args).stdout(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr, started.elapsed())
}

/// SIGTERM, then a clean exit within 30 s.
fn stop(process: &mut Running, what: &str, log: &Path) {
    signal(&process.0, "TERM");
    let status = wait_exit(&mut process.0, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{what} still running after SIGTERM\n{}", read(log)));
    assert!(status.success(), "{what} exit {status}\n{}", read(log));
}

fn wait_for(what: &str, timeout: Duration, log: &Path, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `GET /healthz` on 127.0.0.1:port answers 200.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

struct Files {
    dir: tempfile::TempDir,
    model: String,
    csv: String,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    server::model_store::save(&trained_model(5), &model).unwrap();
    let csv = dir.path().join("customers.csv");
    std::fs::write(
        &csv,
        generate_csv(&GenerateOptions {
            rows: 40,
            seed: 5,
            messy_fraction: 0.0,
        }),
    )
    .unwrap();
    let text = |p: PathBuf| p.to_string_lossy().into_owned();
    Files {
        model: text(model),
        csv: text(csv),
        dir,
    }
}

/// `churn broker --secure` in a fresh data directory: a 0600 credentials file, its password
/// shown nowhere; with it the real `publish`, `replay --limit`, `score` and `analyze` (seen
/// working: predictions and window statistics appear, then SIGTERM) and `serve --brokers`
/// (healthz answers) all work, and the same login from CHURN_KAFKA_PROPERTIES too. Without a
/// login, or with a wrong password, commands fail fast, non-zero, saying what to fix. A restart
/// reuses the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_logs_in_to_a_secured_broker_with_the_properties_file() {
    let f = files();
    let path = |name: &str| f.dir.path().join(name);
    let data = path("data");
    let port = free_port().to_string();
    let brokers = format!("127.0.0.1:{port}");
    let data_arg = data.to_string_lossy().into_owned();
    let broker_args = [
        "broker",
        "--secure",
        "--data-dir",
        &data_arg,
        "--broker-port",
        &port,
    ];
    let broker_log = path("broker.log");
    let mut broker = spawn_logged(&broker_args, &broker_log);
    wait_for("the secured broker", TIMEOUT, &broker_log, || {
        read(&broker_log).contains("created topic")
    });

    let credentials = data.join("kafka.properties");
    assert_eq!(
        mode(&credentials),
        0o600,
        "the credentials file is owner-only"
    );
    let password = password_in(&credentials);
    assert!(password.len() >= 32, "a long random password");
    let shown = read(&broker_log);
    assert!(
        !shown.contains(&password),
        "the broker printed its password:\n{shown}"
    );
    assert!(
        shown.contains(&format!(
            "--kafka-properties {}",
            credentials.canonicalize().unwrap().display()
        )),
        "it says how to connect:\n{shown}"
    );
    let creds = credentials.to_string_lossy().into_owned();
    let login = ["--brokers", &brokers, "--kafka-properties", &creds];

    // Turned away, fast and clearly.
    let (ok, stderr, took) = run(&["publish", &f.model, "--brokers", &brokers]);
    assert!(
        !ok && took < FAST,
        "no login: {ok} after {took:?}\n{stderr}"
    );
    assert!(
        stderr.contains("requires a login") && stderr.contains("--kafka-properties"),
        "{stderr}"
    );
    let wrong = path("wrong.properties");
    std::fs::write(
        &wrong,
        read(&credentials).replace(&password, "not-the-password"),
    )
    .unwrap();
    let wrong_arg = wrong.to_string_lossy().into_owned();
    let (ok, stderr, took) = run(&[
        "publish",
        &f.model,
        "--brokers",
        &brokers,
        "--kafka-properties",
        &wrong_arg,
    ]);
    assert!(
        !ok && took < FAST,
        "wrong password: {ok} after {took:?}\n{stderr}"
    );
    assert!(
        stderr.contains("refused our credentials")
            && stderr.contains(&format!("sasl.password in {wrong_arg}")),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    // The file was written 0644: it works, with a warning naming the chmod to run.
    assert!(
        stderr.contains(&format!("chmod 600 {wrong_arg}")),
        "{stderr}"
    );

    // Every command with the file.
    let (ok, stderr, _) = run(&joined(&login, &["publish", &f.model]));
    assert!(ok, "publish: {stderr}");
    let score_log = path("score.log");
    let mut score = spawn_logged(
        &joined(
            &login,
            &["score", "--model", &f.model, "--group", "secured"],
        ),
        &score_log,
    );
    let analyze_log = path("analyze.log");
    let mut analyze = spawn_logged(
        &joined(
            &login,
            &[
                "analyze",
                "--model",
                &f.model,
                "--window-secs",
                "1",
                "--lateness-secs",
                "0",
            ],
        ),
        &analyze_log,
    );
    let (ok, stderr, _) = run(&joined(
        &login,
        &["replay", &f.csv, "--limit", "20", "--rate", "200"],
    ));
    assert!(ok, "replay: {stderr}");
    let kafka = Kafka::at(&brokers)
        .with_properties_file(&credentials)
        .unwrap();
    let predictions = read_topic(&kafka, &kafka.topics.predictions, TIMEOUT, |m| {
        m.len() >= 20
    });
    assert_eq!(
        predictions_by_id(&predictions).len(),
        20,
        "{}",
        read(&score_log)
    );
    let stats = read_topic(&kafka, &kafka.topics.stats, TIMEOUT, |m| !m.is_empty());
    assert!(
        !stats.is_empty(),
        "no window statistics\n{}",
        read(&analyze_log)
    );
    stop(&mut score, "churn score", &score_log);
    stop(&mut analyze, "churn analyze", &analyze_log);

    let web_port = free_port();
    let serve_log = path("serve.log");
    let mut serve = spawn_logged(
        &joined(
            &login,
            &[
                "serve",
                "--no-analytics",
                "--addr",
                &format!("127.0.0.1:{web_port}"),
                "--site-root",
                &path("no-site").to_string_lossy(),
                "--model",
                &f.model,
                "--data-dir",
                &path("serve-data").to_string_lossy(),
                "--instance-id",
                "secured-web",
            ],
        ),
        &serve_log,
    );
    wait_for("serve's /healthz", TIMEOUT, &serve_log, || {
        healthy(web_port)
    });
    stop(&mut serve, "churn serve", &serve_log);

    // The same login from the environment is accepted (only the command line is refused).
    let env_login = read(&credentials)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(",");
    let output = churn(&["publish", &f.model, "--brokers", &brokers])
        .env("CHURN_KAFKA_PROPERTIES", &env_login)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    for log in [&broker_log, &score_log, &analyze_log, &serve_log] {
        assert!(
            !read(log).contains(&password),
            "{} shows the password",
            log.display()
        );
    }

    // A restart reuses the file and the login.
    stop(&mut broker, "churn broker", &broker_log);
    wait_for("the port to close", TIMEOUT, &broker_log, || {
        !port_in_use(port.parse().unwrap())
    });
    let mut broker = spawn_logged(&broker_args, &broker_log);
    wait_for("the restarted broker", TIMEOUT, &broker_log, || {
        read(&broker_log).matches("it requires a login").count() == 2
    });
    assert_eq!(password_in(&credentials), password, "the same login");
    let (ok, stderr, _) = run(&joined(&login, &["publish", &f.model]));
    assert!(ok, "publish after a restart: {stderr}");
    stop(&mut broker, "churn broker", &broker_log);
}

/// `churn serve --secure-broker` starts the embedded broker requiring a login and logs in by
/// itself with the file it wrote; a client without the login is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_secured_embedded_broker_logs_in_by_itself() {
    let f = files();
    let path = |name: &str| f.dir.path().join(name);
    let broker_port = free_port();
    let web_port = free_port();
    let log = path("serve.log");
    let mut serve = spawn_logged(
        &[
            "serve",
            "--secure-broker",
            "--broker-port",
            &broker_port.to_string(),
            "--data-dir",
            &path("data").to_string_lossy(),
            "--addr",
            &format!("127.0.0.1:{web_port}"),
            "--site-root",
            &path("no-site").to_string_lossy(),
            "--model",
            &f.model,
            "--no-analytics",
            "--instance-id",
            "secured-embedded",
        ],
        &log,
    );
    wait_for("serve's /healthz", TIMEOUT, &log, || healthy(web_port));
    let credentials = path("data").join("kafka.properties");
    assert_eq!(mode(&credentials), 0o600);
    assert!(!read(&log).contains(&password_in(&credentials)));

    let started = Instant::now();
    let refused = Kafka::at(format!("127.0.0.1:{broker_port}"))
        .check_reachable(Duration::from_secs(10))
        .await
        .expect_err("a client without the login is refused");
    assert!(started.elapsed() < FAST, "{:?}", started.elapsed());
    assert!(
        refused.to_string().contains("requires a login"),
        "{refused:#}"
    );
    stop(&mut serve, "churn serve", &log);
}
