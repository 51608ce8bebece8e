//! Nonsense on the command line.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// Nonsense numbers on the command line are refused by the argument parser: exit code 2 and a
/// message naming the flag, at once, with nothing started (no broker is there to talk to).
#[test]
fn nonsense_on_the_command_line_is_a_usage_error_naming_the_flag_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("127.0.0.1:{}", server::broker::free_port());
    let addr = format!("127.0.0.1:{}", server::broker::free_port());
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let (addr, data) = (addr.as_str(), data.as_str());
    let cases: &[(&[&str], &str)] = &[
        (&["analyze", "--window-secs", "-1"], "--window-secs"),
        (&["analyze", "--window-secs=-1"], "--window-secs"),
        (&["analyze", "--window-secs", "NaN"], "--window-secs"),
        (&["analyze", "--window-secs", "0"], "--window-secs"),
        (&["analyze", "--lateness-secs", "inf"], "--lateness-secs"),
        (&["replay", "customers.csv", "--rate", "-5"], "--rate"),
        (&["replay", "customers.csv", "--rate=-5"], "--rate"),
        (&["replay", "customers.csv", "--rate", "nan"], "--rate"),
        (
            &["replay", "customers.csv", "--id-prefix", ""],
            "--id-prefix",
        ),
        (
            &[
                "serve",
                "--reply-timeout",
                "0",
                "--addr",
                addr,
                "--data-dir",
                data,
            ],
            "--reply-timeout",
        ),
        (
            &[
                "serve",
                "--reply-timeout",
                "1e300",
                "--addr",
                addr,
                "--data-dir",
                data,
            ],
            "--reply-timeout",
        ),
        (
            &[
                "serve",
                "--max-pending",
                "0",
                "--addr",
                addr,
                "--data-dir",
                data,
            ],
            "--max-pending",
        ),
        (
            &[
                "serve",
                "--replay-rate",
                "-1",
                "--addr",
                addr,
                "--data-dir",
                data,
            ],
            "--replay-rate",
        ),
        (
            &["serve", "--addr", "localhost:http", "--data-dir", data],
            "--addr",
        ),
        (
            &[
                "serve",
                "--session-hours",
                "0",
                "--addr",
                addr,
                "--data-dir",
                data,
            ],
            "--session-hours",
        ),
        // A sign-on header trusted from anywhere would let anyone name themselves admin.
        (
            &[
                "serve",
                "--trust-proxy-header",
                "X-Forwarded-User",
                "--addr",
                addr,
                "--data-dir",
                data,
            ],
            "--trusted-proxies",
        ),
        (
            &[
                "serve",
                "--trust-proxy-header",
                "X-Forwarded-User",
                "--trusted-proxies",
                "proxy.example.com",
                "--addr",
                addr,
                "--data-dir",
                data,
            ],
            "--trusted-proxies",
        ),
        (
            &["users", "add", "ann", "--role", "root", "--data-dir", data],
            "--role",
        ),
        (&["tokens", "create", "--data-dir", data], "--role"),
        (
            &["generate", "--messy", "1.5", "--output", "x.csv"],
            "--messy",
        ),
        (&["train", "--folds", "1"], "--folds"),
        (&["train", "--l2", "-1"], "--l2"),
        (&["score-file", "--input", "customers.csv"], "--output"),
        // Offline scoring is `churn score-file`: the stream scorer and the web server refuse its flags.
        (
            &[
                "score",
                "--input",
                "customers.csv",
                "--output",
                "scored.csv",
            ],
            "--input",
        ),
        (
            &[
                "serve",
                "--input",
                "customers.csv",
                "--output",
                "scored.csv",
                "--addr",
                addr,
                "--data-dir",
                data,
            ],
            "--input",
        ),
    ];
    for (args, flag) in cases {
        let started = Instant::now();
        let mut child = churn(args)
            .args(["--brokers", &nowhere])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map(Running)
            .unwrap();
        let status = wait_exit(&mut child.0, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{args:?}: still running after 10 s"));
        let (mut out, mut err) = (String::new(), String::new());
        std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
        std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(
            status.code(),
            Some(2),
            "{args:?}: a usage error, got {status}\n{err}"
        );
        assert!(
            err.contains(flag) && err.starts_with("error:"),
            "{args:?}: the message names {flag}:\n{err}"
        );
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?}: at once, not after trying to connect"
        );
        eprintln!("{args:?} -> {}", err.lines().next().unwrap_or_default());
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing was created: {left:?}");
}
