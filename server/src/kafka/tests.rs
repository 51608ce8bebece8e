//! Tests of the Kafka module's parts that need no broker: skip logs, excerpts, topic names and
//! the partitions a reader adds.

use std::time::{Duration, Instant};

use super::skip_log::{EXCERPT_BYTES, SKIP_LOG_EVERY};
use super::tail::added_partitions;
use super::{excerpt, is_legal_topic, SkipLog, Topics, MAX_TOPIC_BYTES};

#[test]
fn skipped_messages_are_logged_once_per_interval_with_the_count_since() {
    let mut log = SkipLog::new("test");
    let start = Instant::now();
    assert_eq!(log.count(start), Some(1), "the first is logged at once");
    assert_eq!(log.count(start + Duration::from_secs(1)), None);
    assert_eq!(log.count(start + Duration::from_secs(9)), None);
    assert_eq!(
        log.count(start + SKIP_LOG_EVERY),
        Some(3),
        "then one line for the three since"
    );
    assert_eq!(log.total, 4);
}

#[test]
fn excerpts_are_short_and_text_even_for_binary_or_multi_byte_payloads() {
    assert_eq!(excerpt(b"{\"a\": 1}"), "{\"a\": 1}");
    let long = "é".repeat(500);
    let shown = excerpt(long.as_bytes());
    assert!(
        shown.len() <= EXCERPT_BYTES + "…".len() && shown.ends_with('…'),
        "{shown}"
    );
    assert!(excerpt(&[0xff; 1000]).chars().count() < 200);
}

#[test]
fn the_flags_default_to_the_same_topics_as_topics_default() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        topics: Topics,
    }
    let parsed = <Cli as clap::Parser>::try_parse_from(["churn"])
        .unwrap()
        .topics;
    assert_eq!(format!("{parsed:?}"), format!("{:?}", Topics::default()));
    assert_eq!(
        (parsed.input.as_str(), parsed.predictions.as_str()),
        ("costumerchurn", "test3"),
        "the original names"
    );
}

#[test]
fn only_reply_topics_with_legal_names_are_accepted_as_reply_to() {
    let topics = Topics::default();
    assert_eq!(topics.reply_topic("web-1"), "test3-replies-web-1");
    assert!(topics.accepts_reply_topic("test3-replies-web-1"));
    assert!(topics.accepts_reply_topic(&format!(
        "test3-replies-{}",
        "x".repeat(MAX_TOPIC_BYTES - 14)
    )));
    for hostile in [
        "churn-models",
        "test3",
        "costumerchurn",
        "test3-replies-",
        "test3-replies-x/../",
        "test3-replies-a b",
        "test3-replies-é",
        "Test3-replies-a",
        "xtest3-replies-a",
        &format!("test3-replies-{}", "x".repeat(MAX_TOPIC_BYTES - 13)),
    ] {
        assert!(!topics.accepts_reply_topic(hostile), "{hostile:?}");
    }
    let odd = Topics {
        models: "test3-replies-models".into(),
        ..Topics::default()
    };
    assert!(
        !odd.accepts_reply_topic("test3-replies-models"),
        "never one of the pipeline's own topics"
    );
    assert!(!is_legal_topic("..") && !is_legal_topic("") && is_legal_topic("a.b_c-D9"));
}

#[test]
fn only_added_partitions_are_assigned_and_a_stale_smaller_count_adds_none() {
    assert_eq!(added_partitions(0, 3), 0..3);
    assert_eq!(added_partitions(3, 5), 3..5);
    assert!(added_partitions(5, 5).is_empty());
    assert!(added_partitions(5, 2).is_empty());
}

/// `--kafka-properties` and -X as parsed: the file's properties first, so -X ones win; secrets
/// never in Debug output; a missing file is an error naming it.
#[test]
fn file_properties_come_first_and_secrets_stay_out_of_debug() {
    use super::{Kafka, KafkaArgs};
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kafka.properties");
    std::fs::write(
        &file,
        "linger.ms=1\nsasl.username=ann\nsasl.password=pa55-word-xyz\n",
    )
    .unwrap();
    let file_arg = file.to_string_lossy().into_owned();
    let args = <Cli as clap::Parser>::try_parse_from([
        "churn",
        "--kafka-properties",
        &file_arg,
        "-X",
        "linger.ms=7",
    ])
    .unwrap()
    .kafka;
    let kafka = Kafka::new("127.0.0.1:1", &args).unwrap();
    let config = kafka.config(&[]);
    assert_eq!(config.get("linger.ms"), Some("7"), "-X wins over the file");
    assert_eq!(config.get("sasl.password"), Some("pa55-word-xyz"));
    assert_eq!(kafka.properties_file.as_deref(), Some(file.as_path()));
    for shown in [
        format!("{kafka:?}"),
        format!("{args:?}"),
        format!("{kafka:#?}"),
    ] {
        assert!(!shown.contains("pa55-word-xyz"), "{shown}");
        assert!(
            shown.contains("ann") || !shown.contains("sasl.username"),
            "{shown}"
        );
    }
    let env_like = KafkaArgs {
        properties: vec![("sasl.password".into(), "pa55-word-xyz".into())],
        ..args.clone()
    };
    assert!(!format!("{env_like:?}").contains("pa55-word-xyz"));

    let missing = KafkaArgs {
        properties_file: Some(dir.path().join("nope.properties")),
        ..args
    };
    let error = format!("{:#}", Kafka::new("127.0.0.1:1", &missing).unwrap_err());
    assert!(error.contains("nope.properties"), "{error}");
}
