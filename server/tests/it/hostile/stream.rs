//! A stream of every kind of garbage through `churn score` processes, one killed mid-stream, with
//! a `churn serve` watching.
//!
//! Over 400 lines: a third of it is the generator of hostile records (each kind with why it is
//! there), the rest one end-to-end scenario that reads best whole.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use model::record::{MAX_KEY_BYTES, MAX_RECORD_BYTES};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

use super::*;

/// What the pipeline must do with a record of the hostile stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Scored,
    DeadLettered,
}

/// One record of the hostile stream: its class (for messages), key, payload and fate.
struct Hostile {
    class: &'static str,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    expect: Expect,
}

/// Every kind of input a real topic sees, good and bad; `i` varies each.
fn hostile(rng: &mut impl rand::Rng, i: usize) -> Hostile {
    use Expect::*;
    let base = good(&format!("Customer {i}"));
    let with = |field: &str, value: &str| -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(&base).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        v.to_string().into_bytes()
    };
    let text = |field: &str, value: &str| with(field, &serde_json::to_string(value).unwrap());
    let (class, payload, expect): (&'static str, Option<Vec<u8>>, Expect) = match i % 32 {
        // Good ones, some in shapes that once broke something.
        0..=3 => ("good", Some(base.clone().into_bytes()), Scored),
        4 => (
            "multi-byte ZIP",
            Some(text("Location", "1 Main St, AK 123€abcd")),
            Scored,
        ),
        5 => (
            "multi-byte state and ZIP",
            Some(text("Location", &format!("{i} Straße, ÄK 9€{i}"))),
            Scored,
        ),
        6 => (
            "bidi override",
            Some(text("Names", "\u{202E}dlihc\u{202C} Ann \u{2066}x\u{2069}")),
            Scored,
        ),
        7 => ("emoji", Some(text("Names", "👩‍👩‍👧‍👦 Smith 😀🇫🇷")), Scored),
        8 => (
            "300 four-byte characters",
            Some(text("Company", &"𝔛".repeat(300))),
            Scored,
        ),
        9 => (
            "zero-width and combining",
            Some(text(
                "Names",
                "A\u{200B}n\u{200D}n\u{FEFF} Z\u{0351}\u{0352}\u{0353}o\u{0301}e",
            )),
            Scored,
        ),
        10 => ("numbers as text", Some(with("Age", "\"42\"")), Scored),
        11 => ("unkeyed", Some(base.clone().into_bytes()), Scored),
        // Bad ones.
        12 => (
            "random bytes",
            Some((0..rng.gen_range(1..300)).map(|_| rng.gen()).collect()),
            DeadLettered,
        ),
        13 => (
            "truncated JSON",
            Some(base.as_bytes()[..rng.gen_range(1..base.len() - 1)].to_vec()),
            DeadLettered,
        ),
        14 => ("wrong type", Some(with("Age", "[40]")), DeadLettered),
        15 => (
            "text for a number",
            Some(with("Years", "\"five\"")),
            DeadLettered,
        ),
        16 => ("NaN", Some(with("Age", "\"NaN\"")), DeadLettered),
        17 => ("infinity", Some(with("Num_Sites", "\"inf\"")), DeadLettered),
        18 => (
            "1e999",
            Some(base.replace("\"Age\":42", "\"Age\":1e999").into_bytes()),
            DeadLettered,
        ),
        19 => (
            "50 KB string",
            Some(text("Names", &"N".repeat(50_000))),
            DeadLettered,
        ),
        20 => (
            "oversized",
            Some(padded(MAX_RECORD_BYTES + 1 + rng.gen_range(0..100_000)).into_bytes()),
            DeadLettered,
        ),
        21 if i % 320 == 21 => ("900 KB", Some(padded(900_000).into_bytes()), DeadLettered),
        21 => (
            "deep nesting",
            Some(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
            DeadLettered,
        ),
        22 => (
            "control character",
            Some(text("Names", "Ann\u{0007}\u{0000}")),
            DeadLettered,
        ),
        23 => (
            "escaped control character",
            Some(base.replace("Customer", "Cust\\u0001omer").into_bytes()),
            DeadLettered,
        ),
        24 => ("empty", Some(Vec::new()), DeadLettered),
        25 => ("no payload", None, DeadLettered),
        26 => (
            "not an object",
            Some([&b"42"[..], b"null", b"[]", b"\"text\""][i % 4].to_vec()),
            DeadLettered,
        ),
        27 => (
            "invalid UTF-8",
            Some(
                base.replace("Customer", "Cust@omer")
                    .bytes()
                    .map(|b| if b == b'@' { 0xFF } else { b })
                    .collect(),
            ),
            DeadLettered,
        ),
        28 => (
            "lone surrogate",
            Some(base.replace("Customer", "\\ud800").into_bytes()),
            DeadLettered,
        ),
        29 => ("absurd value", Some(with("Age", "-5")), DeadLettered),
        30 => (
            "missing field",
            Some(base.replace("\"Num_Sites\":10,", "").into_bytes()),
            DeadLettered,
        ),
        31 if i % 96 == 63 => (
            "non-UTF-8 key",
            Some(base.clone().into_bytes()),
            DeadLettered,
        ),
        _ => ("huge key", Some(base.clone().into_bytes()), DeadLettered),
    };
    let key = match class {
        "unkeyed" => None,
        "huge key" => Some(
            format!(
                "bad-{i}-{}",
                "k".repeat(if i % 64 == 31 { 100_000 } else { 1_000 })
            )
            .into_bytes(),
        ),
        // Lossy, it would read "bad-\u{FFFD}\u{FFFD}-…", an id other keys can share.
        "non-UTF-8 key" => Some([&b"bad-\xff\xfe-"[..], i.to_string().as_bytes()].concat()),
        _ => Some(format!("{}-{i}", if expect == Scored { "good" } else { "bad" }).into_bytes()),
    };
    Hostile {
        class,
        key,
        payload,
        expect,
    }
}

/// GET on 127.0.0.1:port: the status code and the body, or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_as(port, path, None)
}

/// GET with an API token (`Authorization: Bearer`), for what needs a signed-in user.
fn http_get_as(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    )
    .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{authorization}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

/// The hostile stream end to end: good records mixed with every class of bad input, two `churn
/// score` processes of one group, one of them killed with SIGKILL mid-stream and restarted (a
/// rebalance), and a `churn serve --no-scorer` watching. Every good record is scored, every bad
/// one dead-lettered with a reason; no process dies, panics or logs unbounded input; the web
/// server still answers; everything stops cleanly on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_stream_through_a_scorer_killed_mid_stream_scores_every_good_record_and_dead_letters_every_bad_one(
) {
    let p = pipeline().await;
    let started = Instant::now();
    let model_path = model_path(&p, 23);
    let model = server::model_store::load(Path::new(&model_path), &Default::default()).unwrap();
    let topic = p.kafka.topics.input.clone();
    let logs: Vec<PathBuf> = ["scorer-a.log", "scorer-b.log", "scorer-a2.log", "serve.log"]
        .iter()
        .map(|f| p.dir.path().join(f))
        .collect();

    // The stream, each record checked against the per-record path itself first.
    const N: usize = 4_000;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(24);
    let stream: Vec<Hostile> = (0..N).map(|i| hostile(&mut rng, i)).collect();
    for (i, record) in stream.iter().enumerate() {
        let id = record
            .key
            .as_deref()
            .map_or(Ok("costumerchurn-0-0"), std::str::from_utf8);
        let outcome = match id {
            Ok(id) => server::scorer::score_payload(
                id,
                record.payload.as_deref(),
                &model,
                "2024-01-01T00:00:00Z",
            ),
            Err(_) => Err("a key that is not UTF-8 is no record id".into()),
        };
        let expect = if outcome.is_ok() {
            Expect::Scored
        } else {
            Expect::DeadLettered
        };
        assert_eq!(
            expect,
            record.expect,
            "record {i} ({}): {:?}",
            record.class,
            outcome.err()
        );
    }
    let classes: HashSet<&str> = stream.iter().map(|r| r.class).collect();
    eprintln!(
        "hostile stream: {N} records of {} classes, {} good",
        classes.len(),
        stream.iter().filter(|r| r.expect == Expect::Scored).count()
    );

    let web_port = server::broker::free_port();
    let (_, viewer) = server::auth::tokens::create(
        &p.dir.path().join("data"),
        app::Role::Viewer,
        "hostile test",
        chrono::Utc::now(),
    )
    .unwrap();
    let mut web = churn(&[
        "serve",
        "--no-scorer",
        "--brokers",
        &p.kafka.brokers,
        "--addr",
        &format!("127.0.0.1:{web_port}"),
        "--site-root",
        &p.dir.path().join("no-site").to_string_lossy(),
        "--model",
        &model_path,
        "--data-dir",
        &p.dir.path().join("data").to_string_lossy(),
        "--instance-id",
        "hostile-web",
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&logs[3]).unwrap())
    .spawn()
    .map(Running)
    .unwrap();
    let mut a = score_process(&p, &model_path, "scorer-hostile", &logs[0], "info");
    let mut b = score_process(&p, &model_path, "scorer-hostile", &logs[1], "info");

    // Sent over about eight seconds; the first scorer is killed a third of the way through.
    let producer = big_producer(&p.kafka);
    let mut positions: HashMap<(i32, i64), usize> = HashMap::new();
    let mut a2 = None;
    let pace = Instant::now();
    for (i, record) in stream.iter().enumerate() {
        let mut send = FutureRecord::<[u8], [u8]>::to(&topic);
        if let Some(key) = &record.key {
            send = send.key(key.as_slice());
        }
        if let Some(payload) = &record.payload {
            send = send.payload(payload.as_slice());
        }
        let position = producer
            .send(send, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("sending record {i}: {e}"));
        positions.insert((position.partition, position.offset), i);
        if i == N / 3 {
            assert!(
                a.0.try_wait().unwrap().is_none(),
                "the first scorer is running when killed"
            );
            signal(&a.0, "KILL");
            a.0.wait().unwrap();
            a2 = Some(score_process(
                &p,
                &model_path,
                "scorer-hostile",
                &logs[2],
                "info",
            ));
            eprintln!(
                "killed a scorer at record {i} ({} predictions so far)",
                topic_size(&p.kafka, &p.kafka.topics.predictions)
            );
        }
        let due = pace + Duration::from_secs_f64(8.0 * (i + 1) as f64 / N as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    let mut a2 = a2.unwrap();
    let expected_ids: HashSet<String> = positions
        .iter()
        .filter(|(_, &i)| stream[i].expect == Expect::Scored)
        .map(|(&(partition, offset), &i)| match &stream[i].key {
            Some(key) => String::from_utf8(key.clone()).unwrap(),
            None => format!("{topic}-{partition}-{offset}"),
        })
        .collect();
    let expected_dead: HashSet<String> = positions
        .iter()
        .filter(|(_, &i)| stream[i].expect == Expect::DeadLettered)
        .map(|(&(partition, offset), _)| format!("{topic}-{partition}-{offset}"))
        .collect();

    let scored = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        m.iter()
            .map(key_text)
            .filter(|id| expected_ids.contains(id))
            .collect::<HashSet<_>>()
            .len()
            >= expected_ids.len()
    });
    let dead = read_topic(&p.kafka, &p.kafka.topics.dead_letter, TIMEOUT, |m| {
        m.iter()
            .filter_map(|m| header(m, "dlq.source"))
            .filter(|s| expected_dead.contains(s))
            .collect::<HashSet<_>>()
            .len()
            >= expected_dead.len()
    });
    let scored_ids: HashSet<String> = scored.iter().map(key_text).collect();
    let missing: Vec<&String> = expected_ids.difference(&scored_ids).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} good records without a prediction, e.g. {missing:?}",
        expected_ids.difference(&scored_ids).count()
    );
    let unexpected: Vec<&String> = scored_ids.difference(&expected_ids).take(5).collect();
    assert!(
        unexpected.is_empty(),
        "predictions for records that are not good: {unexpected:?}"
    );
    let mut dead_sources = HashSet::new();
    for letter in &dead {
        let source = header(letter, "dlq.source").expect("a source header");
        let i = positions
            .get(&parse_source(&source))
            .unwrap_or_else(|| panic!("a dead letter from {source}, never sent"));
        let reason = header(letter, "dlq.reason").unwrap_or_default();
        assert!(
            !reason.trim().is_empty(),
            "record {i} ({}): a dead letter without a reason",
            stream[*i].class
        );
        assert!(
            !reason.contains("panic"),
            "record {i} ({}): {reason}",
            stream[*i].class
        );
        assert_eq!(
            stream[*i].expect,
            Expect::DeadLettered,
            "record {i} ({}) is good, yet dead-lettered: {reason}",
            stream[*i].class
        );
        assert!(letter.key().map_or(0, <[u8]>::len) <= MAX_KEY_BYTES);
        dead_sources.insert(source);
    }
    assert_eq!(
        dead_sources, expected_dead,
        "every bad record is dead-lettered"
    );

    // Nobody died: the scorers and the web server are still running, and the web server answers.
    assert!(
        b.0.try_wait().unwrap().is_none(),
        "the second scorer is still running"
    );
    assert!(
        a2.0.try_wait().unwrap().is_none(),
        "the restarted scorer is still running"
    );
    assert!(
        web.0.try_wait().unwrap().is_none(),
        "the web server is still running\n{}",
        std::fs::read_to_string(&logs[3]).unwrap()
    );
    wait_until("the web server to be ready", TIMEOUT, || {
        http_get(web_port, "/readyz").is_some_and(|(status, _)| status == 200)
    })
    .await;
    assert_eq!(http_get(web_port, "/healthz").map(|(s, _)| s), Some(200));
    let (status, page) = http_get(web_port, "/dashboard").expect("the dashboard answers");
    assert_eq!(status, 401, "a stranger is refused: {page}");
    let (status, page) =
        http_get_as(web_port, "/dashboard", Some(viewer.expose())).expect("the dashboard answers");
    assert_eq!(status, 200, "{page}");

    let duplicates = scored.len() - expected_ids.len();
    for (process, name, log) in [
        (&mut b, "scorer b", &logs[1]),
        (&mut a2, "restarted scorer", &logs[2]),
        (&mut web, "web server", &logs[3]),
    ] {
        stop_cleanly(process, name, Duration::from_secs(20), log);
    }
    for log in &logs {
        let text = assert_bounded_log(log);
        assert!(!text.contains("panic"), "{}:\n{text}", log.display());
    }
    eprintln!(
        "hostile stream: {} scored ({duplicates} duplicates), {} dead-lettered ({} letters) in {:.1} s",
        expected_ids.len(), expected_dead.len(), dead.len(), started.elapsed().as_secs_f64()
    );
}

/// "costumerchurn-2-17" -> (2, 17).
fn parse_source(source: &str) -> (i32, i64) {
    let mut parts = source.rsplitn(3, '-');
    let offset = parts.next().and_then(|o| o.parse().ok()).unwrap_or(-1);
    let partition = parts.next().and_then(|p| p.parse().ok()).unwrap_or(-1);
    (partition, offset)
}
