//! Hostile input and hostile operators on the real broker and the real binaries: records at and
//! past every size limit, a broker that refuses what the scorer produces, a stream of every kind of
//! garbage with a scorer killed mid-stream, and nonsense on the command line.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use model::record::{MAX_KEY_BYTES, MAX_RECORD_BYTES};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use server::kafka::{Kafka, Topics};
use server::scorer::{Scorer, DEAD_LETTER_COPY_BYTES};

const TIMEOUT: Duration = Duration::from_secs(90);

/// Longest log line accepted: a line never carries unbounded input.
const MAX_LOG_LINE: usize = 4096;

/// A good record; `names` goes in as is (JSON-escaped).
fn record(names: &str, location: &str) -> String {
    serde_json::json!({
        "Names": names, "Age": 42, "Total_Purchase": 9000.5, "Account_Manager": 0, "Years": 5.1,
        "Num_Sites": 10, "Onboard_date": "2011-03-04 05:06:07", "Location": location, "Company": "X"
    })
    .to_string()
}

fn good(name: &str) -> String {
    record(name, "1 Main St, Springfield, IL 62701")
}

/// A record of exactly `size` bytes: a good one whose Names is padded (so too long to be valid
/// once it passes 300 characters).
fn padded(size: usize) -> String {
    let base = record("", "x").len();
    let text = record(&"x".repeat(size - base), "x");
    assert_eq!(text.len(), size);
    text
}

/// A producer for records up to 2 MB (librdkafka refuses more than 1 MB by default); each record
/// sent at once, in its own batch.
fn big_producer(kafka: &Kafka) -> FutureProducer {
    kafka.config(&[("message.max.bytes", "2000000"), ("linger.ms", "0"), ("acks", "all")]).create().unwrap()
}

fn model_file(p: &Pipeline, seed: u64) -> String {
    let path = p.dir.path().join("model.json");
    server::model_file::save(&trained_model(seed), &path).unwrap();
    path.to_string_lossy().into_owned()
}

/// `churn score` of `group`, logging at `level` to `log` (appended).
fn score_process(p: &Pipeline, model: &str, group: &str, log: &Path, level: &str) -> Running {
    churn(&["score", "--brokers", &p.kafka.brokers, "--model", model, "--group", group])
        .env("CHURN_LOG", level)
        .stdout(Stdio::null())
        .stderr(std::fs::File::options().create(true).append(true).open(log).unwrap())
        .spawn()
        .map(Running)
        .unwrap()
}

fn key_text(m: &OwnedMessage) -> String {
    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned()
}

/// Stops a `churn` process with Ctrl-C and expects a clean exit within `timeout`.
fn stop_cleanly(process: &mut Running, what: &str, timeout: Duration, log: &Path) {
    signal(&process.0, "INT");
    let status = wait_exit(&mut process.0, timeout).unwrap_or_else(|| {
        panic!("{what}: still running {timeout:?} after Ctrl-C\n{}", std::fs::read_to_string(log).unwrap_or_default())
    });
    assert!(status.success(), "{what}: exit 0 on Ctrl-C, got {status}\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// No log line longer than `MAX_LOG_LINE`; returns the log.
fn assert_bounded_log(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap();
    if let Some(long) = text.lines().find(|l| l.len() > MAX_LOG_LINE) {
        panic!("a log line of {} bytes: {}…", long.len(), &long[..long.char_indices().nth(300).map_or(long.len(), |(i, _)| i)]);
    }
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    eprintln!("{}: {} lines, the longest {longest} bytes", log.file_name().unwrap().to_string_lossy(), text.lines().count());
    text
}

/// Records past each limit, on one partition between good ones: a 1 MB key (`MAX_KEY_BYTES` is
/// 256), a 1,000,000-byte value (the broker's limit is 1 MiB per batch), one byte past the input
/// limit (`MAX_RECORD_BYTES`) and one exactly at it. Each is dead-lettered once, with its reason,
/// a key of at most 256 bytes and, when cut, `DEAD_LETTER_COPY_BYTES` of it with its original
/// size; none is retried, so every good record after them is scored; and no log line (at debug
/// level) carries the huge input.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_past_every_size_limit_are_dead_lettered_once_and_the_stream_goes_on() {
    let p = pipeline().await;
    let model = model_file(&p, 21);
    let topic = p.kafka.topics.input.clone();
    // "é" is two bytes: the key's cut must fall between characters.
    let huge_key = "é".repeat(500_000);
    assert_eq!(huge_key.len(), 1_000_000);
    let near_broker_limit = padded(1_000_000);
    let past_input_limit = padded(MAX_RECORD_BYTES + 1);
    let at_input_limit = padded(MAX_RECORD_BYTES);
    let sends: Vec<(&str, String)> = vec![
        ("good-0", good("Before")),
        (&huge_key, good("Huge Key")),
        ("good-1", good("Between")),
        ("near-broker-limit", near_broker_limit.clone()),
        ("good-2", good("Between Again")),
        ("past-input-limit", past_input_limit.clone()),
        ("at-input-limit", at_input_limit.clone()),
        ("good-3", good("After")),
    ];
    let producer = big_producer(&p.kafka);
    for (offset, (key, payload)) in sends.iter().enumerate() {
        let delivered = producer
            .send(FutureRecord::to(&topic).partition(0).key(*key).payload(payload), Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("the broker takes record {offset} ({} + {} bytes): {e}", key.len(), payload.len()));
        assert_eq!((delivered.partition, delivered.offset), (0, offset as i64));
    }

    let log = p.dir.path().join("scorer.log");
    let mut scorer = score_process(&p, &model, "scorer-limits", &log, "debug,rdkafka=off,librdkafka=off");
    let scored = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| m.len() >= 4);
    let mut ids: Vec<String> = scored.iter().map(key_text).collect();
    ids.sort();
    assert_eq!(ids, ["good-0", "good-1", "good-2", "good-3"], "the good records, each once");
    stop_cleanly(&mut scorer, "the scorer", Duration::from_secs(20), &log);
    assert_eq!(topic_size(&p.kafka, &p.kafka.topics.predictions), 4);

    let dead = read_topic(&p.kafka, &p.kafka.topics.dead_letter, TIMEOUT, |m| m.len() >= 4);
    assert_eq!(dead.len(), 4, "one dead letter each, none retried");
    assert_eq!(topic_size(&p.kafka, &p.kafka.topics.dead_letter), 4);
    let letter = |offset: i64| {
        let source = format!("{topic}-0-{offset}");
        dead.iter().find(|m| header(m, "dlq.source").as_deref() == Some(source.as_str())).unwrap_or_else(|| panic!("no dead letter from {source}"))
    };

    let huge = letter(1);
    let key = std::str::from_utf8(huge.key().unwrap()).expect("a cut key is still UTF-8");
    assert!(key.len() <= MAX_KEY_BYTES && key.ends_with('…') && huge_key.starts_with(key.trim_end_matches('…')), "{key}");
    let reason = header(huge, "dlq.reason").unwrap();
    assert!(reason.contains("record key too long: 1000000 bytes"), "{reason}");
    assert_eq!(huge.payload(), Some(good("Huge Key").as_bytes()), "the original value, whole");
    assert_eq!(header(huge, "dlq.original_size"), None);

    for (offset, original) in [(3, &near_broker_limit), (5, &past_input_limit)] {
        let cut = letter(offset);
        let reason = header(cut, "dlq.reason").unwrap();
        assert!(reason.contains(&format!("record too large: {} bytes", original.len())), "{reason}");
        assert_eq!(cut.payload(), Some(&original.as_bytes()[..DEAD_LETTER_COPY_BYTES]), "its first {DEAD_LETTER_COPY_BYTES} bytes");
        assert_eq!(header(cut, "dlq.original_size"), Some(original.len().to_string()));
        assert!(cut.key().unwrap().len() <= MAX_KEY_BYTES);
    }

    let at_limit = letter(6);
    let reason = header(at_limit, "dlq.reason").unwrap();
    assert!(!reason.contains("too large") && reason.contains("Names") && reason.contains("too long"), "read, then refused: {reason}");
    assert_eq!(at_limit.payload(), Some(at_input_limit.as_bytes()), "kept whole");
    assert_eq!(header(at_limit, "dlq.original_size"), None);

    let log_text = assert_bounded_log(&log);
    assert!(!log_text.contains("will retry") && !log_text.contains("panic"), "nothing retried, nothing panicked:\n{log_text}");
    assert!(log_text.contains("scored=4 dead_lettered=4"), "final counts:\n{log_text}");
}

/// Creates `topic` with one partition and the given `max.message.bytes`.
async fn create_limited_topic(kafka: &Kafka, topic: &str, max_message_bytes: usize) {
    let admin: AdminClient<DefaultClientContext> = kafka.config(&[]).create().unwrap();
    let limit = max_message_bytes.to_string();
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &limit);
    let results = admin.create_topics(&[new], &AdminOptions::new()).await.unwrap();
    for result in results {
        result.unwrap_or_else(|(name, e)| panic!("creating {name}: {e}"));
    }
}

/// The broker refuses for good what the scorer produces (topics with a small `max.message.bytes`):
/// a prediction too large for the predictions topic becomes a dead letter; a dead letter too large
/// for its topic becomes one without the record's copy, naming its original size; the records
/// around it are scored, nothing is retried forever, and the scorer stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_the_broker_refuses_for_good_fall_back_to_dead_letters_and_the_stream_goes_on() {
    let p = pipeline().await;
    let model = trained_model(22);
    let now = "2024-01-01T00:00:00.000Z";
    // 300 four-byte characters: the longest valid name, 1,200 bytes, and in the prediction too.
    let long_name = "😀".repeat(300);
    let small = good("Small");
    let big = good(&long_name);
    let small_prediction = server::scorer::score_payload("small-0", Some(small.as_bytes()), &model, now).unwrap().len();
    let big_prediction = server::scorer::score_payload("big-0", Some(big.as_bytes()), &model, now).unwrap().len();
    // A batch of one record carries about 100 bytes besides its key and value.
    let predictions_limit = small_prediction + 300;
    assert!(big_prediction > predictions_limit + 300, "{big_prediction} vs {predictions_limit}");
    // Too small for the big record with its headers; large enough for the headers alone.
    let dead_letters_limit = 1_000;
    assert!(big.len() > dead_letters_limit + 200);

    for (case, dead_letter_limit) in [("a", None), ("b", Some(dead_letters_limit))] {
        let topics = Topics {
            predictions: format!("small-predictions-{case}"),
            dead_letter: format!("small-dead-letters-{case}"),
            input: format!("input-{case}"),
            partitions: 1,
            ..p.kafka.topics.clone()
        };
        let kafka = Kafka { topics, ..p.kafka.clone() };
        kafka.ensure_topics(&[(&kafka.topics.input, 1, false)]).await.unwrap();
        create_limited_topic(&kafka, &kafka.topics.predictions, predictions_limit).await;
        match dead_letter_limit {
            Some(limit) => create_limited_topic(&kafka, &kafka.topics.dead_letter, limit).await,
            None => kafka.ensure_topics(&[(&kafka.topics.dead_letter, 1, false)]).await.unwrap(),
        }
        let (stop_tx, stop) = stop_switch();
        let (_m, models) = tokio::sync::watch::channel(model.clone());
        let scorer = Scorer::new(kafka.clone(), format!("scorer-refused-{case}"), models);
        let stats = scorer.stats.clone();
        let task = tokio::spawn(scorer.run(stop));

        // One at a time, each after the previous one's outcome: each prediction alone in its batch.
        let producer = kafka.idempotent_producer().unwrap();
        let sends = [("small-0", &small), ("big-0", &big), ("small-1", &small), ("big-1", &big), ("small-2", &small)];
        for (i, (key, payload)) in sends.iter().enumerate() {
            producer.send(FutureRecord::to(&kafka.topics.input).key(*key).payload(payload.as_str()), Duration::from_secs(10)).await.unwrap();
            wait_until(&format!("case {case}: an outcome for {key}"), TIMEOUT, || {
                stats.scored.get() + stats.dead_lettered.get() + stats.dropped.get()
                    > i as u64
            })
            .await;
        }
        let scored = read_topic(&kafka, &kafka.topics.predictions, TIMEOUT, |m| m.len() >= 3);
        assert_eq!(scored.iter().map(key_text).collect::<Vec<_>>(), ["small-0", "small-1", "small-2"], "case {case}");
        let dead = read_topic(&kafka, &kafka.topics.dead_letter, TIMEOUT, |m| m.len() >= 2);
        assert_eq!(dead.iter().map(key_text).collect::<Vec<_>>(), ["big-0", "big-1"], "case {case}: one dead letter each");
        for letter in &dead {
            let reason = header(letter, "dlq.reason").unwrap();
            assert_eq!(header(letter, "dlq.source").unwrap(), format!("{}-0-{}", kafka.topics.input, if key_text(letter) == "big-0" { 1 } else { 3 }));
            match case {
                "a" => {
                    assert!(reason.contains("the broker refused this record's prediction") && reason.contains("too large"), "{reason}");
                    assert_eq!(letter.payload(), Some(big.as_bytes()), "the original record, whole");
                    assert_eq!(header(letter, "dlq.original_size"), None);
                }
                _ => {
                    assert!(reason.contains("the broker refused this dead letter whole"), "{reason}");
                    assert_eq!(letter.payload().unwrap_or_default(), b"", "no copy fits: none");
                    assert_eq!(header(letter, "dlq.original_size"), Some(big.len().to_string()));
                }
            }
        }
        assert_eq!(stats.scored.get(), 3);
        assert_eq!(stats.dead_lettered.get(), 2);
        assert_eq!(stats.dropped.get(), 0);
        // Each refusal leads to something smaller: no attempt is doomed to fail again.
        let refusals = stats.produce_errors.get();
        eprintln!("case {case}: {refusals} refusals by the broker for 2 records");
        assert_eq!(refusals, if case == "a" { 2 } else { 4 }, "case {case}");
        stop_tx.cancel();
        tokio::time::timeout(Duration::from_secs(30), task).await.expect("stops").unwrap().expect("stops cleanly");
    }
}

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
        0 | 1 | 2 | 3 => ("good", Some(base.clone().into_bytes()), Scored),
        4 => ("multi-byte ZIP", Some(text("Location", "1 Main St, AK 123€abcd")), Scored),
        5 => ("multi-byte state and ZIP", Some(text("Location", &format!("{i} Straße, ÄK 9€{i}"))), Scored),
        6 => ("bidi override", Some(text("Names", "\u{202E}dlihc\u{202C} Ann \u{2066}x\u{2069}")), Scored),
        7 => ("emoji", Some(text("Names", "👩‍👩‍👧‍👦 Smith 😀🇫🇷")), Scored),
        8 => ("300 four-byte characters", Some(text("Company", &"𝔛".repeat(300))), Scored),
        9 => ("zero-width and combining", Some(text("Names", "A\u{200B}n\u{200D}n\u{FEFF} Z\u{0351}\u{0352}\u{0353}o\u{0301}e")), Scored),
        10 => ("numbers as text", Some(with("Age", "\"42\"")), Scored),
        11 => ("unkeyed", Some(base.clone().into_bytes()), Scored),
        // Bad ones.
        12 => ("random bytes", Some((0..rng.gen_range(1..300)).map(|_| rng.gen()).collect()), DeadLettered),
        13 => ("truncated JSON", Some(base.as_bytes()[..rng.gen_range(1..base.len() - 1)].to_vec()), DeadLettered),
        14 => ("wrong type", Some(with("Age", "[40]")), DeadLettered),
        15 => ("text for a number", Some(with("Years", "\"five\"")), DeadLettered),
        16 => ("NaN", Some(with("Age", "\"NaN\"")), DeadLettered),
        17 => ("infinity", Some(with("Num_Sites", "\"inf\"")), DeadLettered),
        18 => ("1e999", Some(base.replace("\"Age\":42", "\"Age\":1e999").into_bytes()), DeadLettered),
        19 => ("50 KB string", Some(text("Names", &"N".repeat(50_000))), DeadLettered),
        20 => ("oversized", Some(padded(MAX_RECORD_BYTES + 1 + rng.gen_range(0..100_000)).into_bytes()), DeadLettered),
        21 if i % 320 == 21 => ("900 KB", Some(padded(900_000).into_bytes()), DeadLettered),
        21 => ("deep nesting", Some(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()), DeadLettered),
        22 => ("control character", Some(text("Names", "Ann\u{0007}\u{0000}")), DeadLettered),
        23 => ("escaped control character", Some(base.replace("Customer", "Cust\\u0001omer").into_bytes()), DeadLettered),
        24 => ("empty", Some(Vec::new()), DeadLettered),
        25 => ("no payload", None, DeadLettered),
        26 => ("not an object", Some([&b"42"[..], b"null", b"[]", b"\"text\""][i % 4].to_vec()), DeadLettered),
        27 => ("invalid UTF-8", Some(base.replace("Customer", "Cust@omer").bytes().map(|b| if b == b'@' { 0xFF } else { b }).collect()), DeadLettered),
        28 => ("lone surrogate", Some(base.replace("Customer", "\\ud800").into_bytes()), DeadLettered),
        29 => ("absurd value", Some(with("Age", "-5")), DeadLettered),
        30 => ("missing field", Some(base.replace("\"Num_Sites\":10,", "").into_bytes()), DeadLettered),
        31 if i % 96 == 63 => ("non-UTF-8 key", Some(base.clone().into_bytes()), DeadLettered),
        _ => ("huge key", Some(base.clone().into_bytes()), DeadLettered),
    };
    let key = match class {
        "unkeyed" => None,
        "huge key" => Some(format!("bad-{i}-{}", "k".repeat(if i % 64 == 31 { 100_000 } else { 1_000 })).into_bytes()),
        // Lossy, it would read "bad-\u{FFFD}\u{FFFD}-…", an id other keys can share.
        "non-UTF-8 key" => Some([&b"bad-\xff\xfe-"[..], i.to_string().as_bytes()].concat()),
        _ => Some(format!("{}-{i}", if expect == Scored { "good" } else { "bad" }).into_bytes()),
    };
    Hostile { class, key, payload, expect }
}

/// GET on 127.0.0.1:port: the status code and the body, or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
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
async fn a_hostile_stream_through_a_scorer_killed_mid_stream_scores_every_good_record_and_dead_letters_every_bad_one() {
    let p = pipeline().await;
    let started = Instant::now();
    let model_path = model_file(&p, 23);
    let model = server::model_file::load(Path::new(&model_path)).unwrap();
    let topic = p.kafka.topics.input.clone();
    let logs: Vec<PathBuf> = ["scorer-a.log", "scorer-b.log", "scorer-a2.log", "serve.log"].iter().map(|f| p.dir.path().join(f)).collect();

    // The stream, each record checked against the per-record path itself first.
    const N: usize = 4_000;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(24);
    let stream: Vec<Hostile> = (0..N).map(|i| hostile(&mut rng, i)).collect();
    for (i, record) in stream.iter().enumerate() {
        let id = record.key.as_deref().map_or(Ok("costumerchurn-0-0"), std::str::from_utf8);
        let outcome = match id {
            Ok(id) => server::scorer::score_payload(id, record.payload.as_deref(), &model, "2024-01-01T00:00:00Z"),
            Err(_) => Err("a key that is not UTF-8 is no record id".into()),
        };
        let expect = if outcome.is_ok() { Expect::Scored } else { Expect::DeadLettered };
        assert_eq!(expect, record.expect, "record {i} ({}): {:?}", record.class, outcome.err());
    }
    let classes: HashSet<&str> = stream.iter().map(|r| r.class).collect();
    eprintln!("hostile stream: {N} records of {} classes, {} good", classes.len(), stream.iter().filter(|r| r.expect == Expect::Scored).count());

    let web_port = server::broker::free_port();
    let mut web = churn(&[
        "serve", "--no-scorer", "--brokers", &p.kafka.brokers, "--addr", &format!("127.0.0.1:{web_port}"),
        "--site-root", &p.dir.path().join("no-site").to_string_lossy(), "--model", &model_path,
        "--data-dir", &p.dir.path().join("data").to_string_lossy(), "--instance-id", "hostile-web",
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
        let position = producer.send(send, Duration::from_secs(30)).await.unwrap_or_else(|(e, _)| panic!("sending record {i}: {e}"));
        positions.insert((position.partition, position.offset), i);
        if i == N / 3 {
            assert!(a.0.try_wait().unwrap().is_none(), "the first scorer is running when killed");
            signal(&a.0, "KILL");
            a.0.wait().unwrap();
            a2 = Some(score_process(&p, &model_path, "scorer-hostile", &logs[2], "info"));
            eprintln!("killed a scorer at record {i} ({} predictions so far)", topic_size(&p.kafka, &p.kafka.topics.predictions));
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
        m.iter().map(key_text).filter(|id| expected_ids.contains(id)).collect::<HashSet<_>>().len() >= expected_ids.len()
    });
    let dead = read_topic(&p.kafka, &p.kafka.topics.dead_letter, TIMEOUT, |m| {
        m.iter().filter_map(|m| header(m, "dlq.source")).filter(|s| expected_dead.contains(s)).collect::<HashSet<_>>().len() >= expected_dead.len()
    });
    let scored_ids: HashSet<String> = scored.iter().map(key_text).collect();
    let missing: Vec<&String> = expected_ids.difference(&scored_ids).take(5).collect();
    assert!(missing.is_empty(), "{} good records without a prediction, e.g. {missing:?}", expected_ids.difference(&scored_ids).count());
    let unexpected: Vec<&String> = scored_ids.difference(&expected_ids).take(5).collect();
    assert!(unexpected.is_empty(), "predictions for records that are not good: {unexpected:?}");
    let mut dead_sources = HashSet::new();
    for letter in &dead {
        let source = header(letter, "dlq.source").expect("a source header");
        let i = positions.get(&parse_source(&source)).unwrap_or_else(|| panic!("a dead letter from {source}, never sent"));
        let reason = header(letter, "dlq.reason").unwrap_or_default();
        assert!(!reason.trim().is_empty(), "record {i} ({}): a dead letter without a reason", stream[*i].class);
        assert!(!reason.contains("panic"), "record {i} ({}): {reason}", stream[*i].class);
        assert_eq!(stream[*i].expect, Expect::DeadLettered, "record {i} ({}) is good, yet dead-lettered: {reason}", stream[*i].class);
        assert!(letter.key().map_or(0, <[u8]>::len) <= MAX_KEY_BYTES);
        dead_sources.insert(source);
    }
    assert_eq!(dead_sources, expected_dead, "every bad record is dead-lettered");

    // Nobody died: the scorers and the web server are still running, and the web server answers.
    assert!(b.0.try_wait().unwrap().is_none(), "the second scorer is still running");
    assert!(a2.0.try_wait().unwrap().is_none(), "the restarted scorer is still running");
    assert!(web.0.try_wait().unwrap().is_none(), "the web server is still running\n{}", std::fs::read_to_string(&logs[3]).unwrap());
    wait_until("the web server to be ready", TIMEOUT, || http_get(web_port, "/readyz").is_some_and(|(status, _)| status == 200)).await;
    assert_eq!(http_get(web_port, "/healthz").map(|(s, _)| s), Some(200));
    let (status, page) = http_get(web_port, "/dashboard").expect("the dashboard answers");
    assert_eq!(status, 200, "{page}");

    let duplicates = scored.len() - expected_ids.len();
    for (process, name, log) in [(&mut b, "scorer b", &logs[1]), (&mut a2, "restarted scorer", &logs[2]), (&mut web, "web server", &logs[3])] {
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
        (&["replay", "customers.csv", "--id-prefix", ""], "--id-prefix"),
        (&["serve", "--reply-timeout", "0", "--addr", addr, "--data-dir", data], "--reply-timeout"),
        (&["serve", "--reply-timeout", "1e300", "--addr", addr, "--data-dir", data], "--reply-timeout"),
        (&["serve", "--max-pending", "0", "--addr", addr, "--data-dir", data], "--max-pending"),
        (&["serve", "--replay-rate", "-1", "--addr", addr, "--data-dir", data], "--replay-rate"),
        (&["serve", "--addr", "localhost:http", "--data-dir", data], "--addr"),
        (&["generate", "--messy", "1.5", "--output", "x.csv"], "--messy"),
        (&["train", "--folds", "1"], "--folds"),
        (&["train", "--l2", "-1"], "--l2"),
        (&["score", "--input", "customers.csv"], "--output"),
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
        let status = wait_exit(&mut child.0, Duration::from_secs(10)).unwrap_or_else(|| panic!("{args:?}: still running after 10 s"));
        let (mut out, mut err) = (String::new(), String::new());
        std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
        std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: a usage error, got {status}\n{err}");
        assert!(err.contains(flag) && err.starts_with("error:"), "{args:?}: the message names {flag}:\n{err}");
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}: at once, not after trying to connect");
        eprintln!("{args:?} -> {}", err.lines().next().unwrap_or_default());
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "nothing was created: {left:?}");
}

/// Under load, with a predictions topic whose `max.message.bytes` is below the producer's batch
/// size: the broker refuses a too-large batch as a whole, so the scorer's batches must stay within
/// the topic's limit, or every good record batched with a too-large one (or with enough others)
/// would be dead-lettered. Only the records whose own prediction is too large are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_on_a_topic_with_a_small_message_limit_dead_letters_only_the_records_too_large_for_it() {
    let p = pipeline().await;
    let model = trained_model(22);
    let (small, big) = (good("Small"), good(&"😀".repeat(300)));
    let size = |id: &str, record: &str| server::scorer::score_payload(id, Some(record.as_bytes()), &model, "now").unwrap().len();
    // Room for two small predictions per batch, not for one big one.
    let limit = 2 * size("r-0000", &small) + 300;
    assert!(size("r-0000", &big) > limit, "{} {limit}", size("r-0000", &big));
    let topics = Topics {
        predictions: "limited-predictions".into(),
        input: "burst".into(),
        dead_letter: "burst-dead-letters".into(),
        partitions: 1,
        ..p.kafka.topics.clone()
    };
    let kafka = Kafka { topics, ..p.kafka.clone() };
    kafka.ensure_topics(&[(&kafka.topics.input, 1, false), (&kafka.topics.dead_letter, 1, false)]).await.unwrap();
    create_limited_topic(&kafka, &kafka.topics.predictions, limit).await;

    // Each refusal costs the idempotent producer about 0.1 s (measured: 2,000 records, 286
    // refused, 35 s), so fewer records here.
    const N: usize = 700;
    let is_big = |i: usize| i % 7 == 3;
    let producer = kafka.idempotent_producer().unwrap();
    let keys: Vec<String> = (0..N).map(|i| format!("r-{i:04}")).collect();
    let sends = keys.iter().enumerate().map(|(i, key)| {
        let payload = if is_big(i) { &big } else { &small };
        producer.send(FutureRecord::to(&kafka.topics.input).key(key).payload(payload), Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.unwrap();
    }
    let (stop_tx, stop) = stop_switch();
    let (_m, models) = tokio::sync::watch::channel(model.clone());
    let scorer = Scorer::new(kafka.clone(), "scorer-burst", models);
    let stats = scorer.stats.clone();
    let task = tokio::spawn(scorer.run(stop));
    wait_until("every record's outcome", TIMEOUT, || {
        stats.scored.get() + stats.dead_lettered.get() + stats.dropped.get() >= N as u64
    })
    .await;
    stop_tx.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await.expect("stops").unwrap().expect("stops cleanly");

    let bigs = (0..N).filter(|&i| is_big(i)).count();
    let refusals = stats.produce_errors.get();
    eprintln!(
        "burst of {N} on a topic limited to {limit} bytes: {} scored, {} dead-lettered, {refusals} refusals",
        stats.scored.get(), stats.dead_lettered.get()
    );
    let scored: HashSet<String> = read_topic(&kafka, &kafka.topics.predictions, TIMEOUT, |m| m.len() >= N - bigs).iter().map(key_text).collect();
    let expected: HashSet<String> = (0..N).filter(|&i| !is_big(i)).map(|i| keys[i].clone()).collect();
    assert_eq!(scored.len(), expected.len(), "every small record scored, and only those");
    assert_eq!(scored, expected);
    let dead = read_topic(&kafka, &kafka.topics.dead_letter, TIMEOUT, |m| m.len() >= bigs);
    assert_eq!(dead.len(), bigs, "only the records whose prediction is too large are dead-lettered");
    assert!(dead.iter().all(|m| is_big(key_text(m)[2..].parse().unwrap())));
    assert!(dead.iter().all(|m| header(m, "dlq.reason").unwrap().contains("the broker refused this record's prediction")));
    assert_eq!(refusals as usize, bigs, "each big record refused once, alone");
}
