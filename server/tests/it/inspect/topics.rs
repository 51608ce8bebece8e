//! `churn topics`: counts, offsets, retention and cleanup policy of every topic;
//! `--apply-retention` changes retention.ms and nothing else.

use serde_json::Value;

use super::*;

fn topic<'a>(listing: &'a Value, name: &str) -> &'a Value {
    listing
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {listing}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_shows_counts_and_retention_and_apply_retention_changes_only_it() {
    let p = pipeline().await;
    let producer = p.kafka.idempotent_producer().unwrap();
    let input = p.kafka.topics.input.clone();
    for i in 0..5 {
        send(
            &producer,
            &input,
            1,
            format!("k{i}").as_bytes(),
            b"{}",
            None,
        )
        .await;
    }
    send(&producer, &input, 2, b"k", b"{}", None).await;
    // A topic that is not the pipeline's is listed too, and left alone by --apply-retention.
    p.kafka
        .ensure_topics(&[("someone-elses", 2, false)])
        .await
        .unwrap();

    let listing: Value = serde_json::from_str(&stdout_of(&p, &["topics", "--json"])).unwrap();
    let t = topic(&listing, &input);
    assert_eq!(t["records"], 6);
    assert_eq!(t["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(
        t["partitions"][1],
        serde_json::json!({"partition": 1, "low": 0, "high": 5})
    );
    assert_eq!(
        t["retention_ms"],
        7 * 24 * 3600 * 1000,
        "created with the default"
    );
    let models = topic(&listing, &p.kafka.topics.models);
    assert_eq!(models["cleanup_policy"], "compact");
    assert_eq!(
        models["retention_ms"],
        Value::Null,
        "compacted, no retention set"
    );
    // Window stats have a key per window: compaction alone would keep them all, for ever.
    let stats = topic(&listing, &p.kafka.topics.stats);
    assert_eq!(stats["cleanup_policy"], "compact,delete");
    assert_eq!(stats["retention_ms"], 24 * 3600 * 1000, "a day at most");

    let table = stdout_of(&p, &["topics"]);
    let line = table.lines().find(|l| l.starts_with(&input)).unwrap();
    assert!(
        line.contains(" 6 ") && line.contains("7days") && line.contains("1:0-5"),
        "{table}"
    );
    let header = table.lines().next().unwrap();
    assert_eq!(
        header.find("RECORDS"),
        line.find(" 6 ").map(|i| i + 1),
        "columns line up:\n{table}"
    );

    // What a start with --retention 90min warns about: every pipeline topic with a retention
    // (models are compacted only), and nothing once it is applied.
    let ninety = server::kafka::Topics {
        retention: std::time::Duration::from_secs(90 * 60),
        ..p.kafka.topics.clone()
    };
    let differences = |existing: &[server::kafka::inspect::TopicInfo]| {
        let mut names: Vec<String> =
            server::kafka::inspect::retention_differences(&ninety, existing)
                .into_iter()
                .map(|c| c.topic)
                .collect();
        names.sort();
        names
    };
    let existing = server::kafka::inspect::describe_topics(&p.kafka)
        .await
        .unwrap();
    let mut expected: Vec<String> = p
        .kafka
        .retained_topics()
        .iter()
        .map(|t| t.to_string())
        .collect();
    expected.push(p.kafka.topics.stats.clone());
    expected.sort();
    assert_eq!(differences(&existing), expected);

    let applied = stdout_of(&p, &["topics", "--apply-retention", "--retention", "90min"]);
    let existing = server::kafka::inspect::describe_topics(&p.kafka)
        .await
        .unwrap();
    assert_eq!(
        differences(&existing),
        Vec::<String>::new(),
        "nothing to warn about once applied"
    );
    for name in [
        &p.kafka.topics.input,
        &p.kafka.topics.predictions,
        &p.kafka.topics.dead_letter,
        &p.kafka.topics.labels,
    ] {
        assert!(
            applied.contains(&format!("{name}: retention 7days -> 1h 30m")),
            "{applied}"
        );
    }
    assert!(
        applied.contains(&format!(
            "{}: retention 1day -> 1h 30m",
            p.kafka.topics.stats
        )),
        "stats follow a retention under a day: {applied}"
    );
    assert!(!applied.contains("someone-elses") && !applied.contains(&p.kafka.topics.models));

    let listing: Value = serde_json::from_str(&stdout_of(&p, &["topics", "--json"])).unwrap();
    assert_eq!(topic(&listing, &input)["retention_ms"], 90 * 60 * 1000);
    assert_eq!(topic(&listing, &input)["records"], 6, "records untouched");
    let models = topic(&listing, &p.kafka.topics.models);
    assert_eq!(models["cleanup_policy"], "compact", "compaction kept");
    assert_eq!(models["retention_ms"], Value::Null);
    let stats = topic(&listing, &p.kafka.topics.stats);
    assert_eq!(stats["cleanup_policy"], "compact,delete");
    assert_eq!(stats["retention_ms"], 90 * 60 * 1000);
    assert_eq!(
        topic(&listing, "someone-elses")["retention_ms"],
        7 * 24 * 3600 * 1000
    );

    // Again: nothing left to change, and it says so.
    let again = stdout_of(&p, &["topics", "--apply-retention", "--retention", "90min"]);
    assert!(
        again.contains(&format!("{input}: retention 1h 30m (unchanged)")),
        "{again}"
    );
}

/// A broker that is not there: an error that says so, promptly, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_without_a_broker_fails_with_a_message() {
    let port = server::broker::free_port().to_string();
    let started = std::time::Instant::now();
    let out = churn(&["topics", "--brokers", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&port), "{stderr}");
}
