//! `churn groups`: a group's committed offsets and its lag per partition, and its members.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::*;

fn group<'a>(listing: &'a Value, name: &str) -> Option<&'a Value> {
    listing
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_shows_committed_offsets_lag_and_members() {
    let p = pipeline().await;
    let producer = p.kafka.idempotent_producer().unwrap();
    let input = p.kafka.topics.input.clone();
    for i in 0..10 {
        send(
            &producer,
            &input,
            0,
            format!("k{i}").as_bytes(),
            b"{}",
            None,
        )
        .await;
    }
    // A group that has read 4 records of partition 0 and committed: 6 behind.
    let reader: BaseConsumer = p
        .kafka
        .consumer_config("lagging", &[("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut committed = TopicPartitionList::new();
    committed
        .add_partition_offset(&input, 0, Offset::Offset(4))
        .unwrap();
    reader.commit(&committed, CommitMode::Sync).unwrap();
    drop(reader);
    // A live member of another group.
    let member: StreamConsumer = p
        .kafka
        .consumer_config("watching", &[("client.id", "the-watcher")])
        .create()
        .unwrap();
    member.subscribe(&[&input]).unwrap();
    let (stop_tx, stop) = stop_switch();
    let polling = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = member.recv() => {}
            }
        }
    });

    let mut listing = Value::Null;
    wait_until("the member to join", Duration::from_secs(60), || {
        listing = serde_json::from_str(&stdout_of(&p, &["groups", "--json"])).unwrap();
        group(&listing, "watching").is_some_and(|g| !g["members"].as_array().unwrap().is_empty())
    })
    .await;
    let lagging = group(&listing, "lagging").unwrap_or_else(|| panic!("{listing}"));
    assert_eq!(
        lagging["offsets"],
        serde_json::json!([{"topic": input, "partition": 0, "committed": 4, "end": 10, "lag": 6}])
    );
    assert_eq!(lagging["total_lag"], 6);
    // Nisshi 0.8 reports members' ids but leaves their client ids and hosts empty; a real
    // cluster fills them in (and the table shows client@host then).
    let watching = group(&listing, "watching").unwrap();
    let member_id = watching["members"][0]["member_id"].as_str().unwrap();
    assert!(!member_id.is_empty(), "{watching}");
    assert!(["", "the-watcher"].contains(&watching["members"][0]["client_id"].as_str().unwrap()));

    let table = stdout_of(&p, &["groups"]);
    let row = table.lines().find(|l| l.starts_with("lagging")).unwrap();
    assert!(
        row.split_whitespace().rev().take(3).eq(["6", "10", "4"]),
        "{table}"
    );
    let watching_row = table.lines().find(|l| l.starts_with("watching")).unwrap();
    assert!(
        watching_row.contains(member_id) || watching_row.contains("the-watcher@"),
        "{table}"
    );
    stop_tx.cancel();
    polling.await.unwrap();
}
