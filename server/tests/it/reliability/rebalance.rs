//! Scorers joining and leaving a group mid-stream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use rdkafka::Message;
use server::scorer::Scorer;
use tokio_util::sync::CancellationToken;

use super::*;

/// Keys of a topic's messages per partition, in offset order.
fn keys_by_partition(messages: &[rdkafka::message::OwnedMessage]) -> BTreeMap<i32, Vec<String>> {
    let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for m in messages {
        let key = String::from_utf8_lossy(m.key().expect("keyed")).into_owned();
        by_partition
            .entry(m.partition())
            .or_default()
            .push((m.offset(), key));
    }
    by_partition
        .into_iter()
        .map(|(partition, mut keyed)| {
            keyed.sort_unstable();
            (partition, keyed.into_iter().map(|(_, key)| key).collect())
        })
        .collect()
}

/// One in-process scorer of a group, with its own stop switch.
struct GroupMember {
    stop: CancellationToken,
    stats: std::sync::Arc<server::scorer::ScorerStats>,
    health: std::sync::Arc<server::health::Health>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl GroupMember {
    fn join(
        p: &Pipeline,
        group: &str,
        models: &tokio::sync::watch::Receiver<model::Lineup>,
    ) -> Self {
        let (stop, stopped) = stop_switch();
        let scorer = Scorer::new(p.kafka.clone(), group, models.clone());
        let (stats, health) = (scorer.stats.clone(), scorer.health.clone());
        GroupMember {
            stop,
            stats,
            health,
            task: tokio::spawn(scorer.run(stopped)),
        }
    }

    fn scored(&self) -> u64 {
        self.stats.scored.get()
    }

    /// Stops it (it commits and leaves the group) and returns how many it scored.
    async fn leave(self) -> u64 {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("a scorer stops within 30 s")
            .unwrap()
            .expect("a scorer stops cleanly");
        self.stats.scored.get()
    }
}

/// Rebalances mid-stream, on six partitions: one scorer, then three, then two (one leaves), while
/// 100,000 records stream in. Every record gets a prediction; in each partition the predictions,
/// each key counted at its first appearance, come in exactly the input order (a new owner never
/// starts past what the old one delivered, and nothing is reordered); a duplicate only repeats a
/// key already delivered in the same partition, and there are few of them (the rebalance hook
/// finishes the batches in flight and commits before giving partitions up).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scorers_joining_and_leaving_mid_stream_score_everything_in_order_per_partition() {
    const N: usize = 100_000;
    const GROUP: &str = "scorer-rebalance";
    let p = pipeline_with_partitions(6).await;
    let started = std::time::Instant::now();
    let (_m, models) = tokio::sync::watch::channel(model::Lineup::from(trained_model(7)));
    let producer = replay_in_background(&p, N, 4_000.0, "rb");

    let a = GroupMember::join(&p, GROUP, &models);
    wait_until(
        "the first scorer to score part of the stream",
        TIMEOUT,
        || a.scored() >= 10_000,
    )
    .await;
    let b = GroupMember::join(&p, GROUP, &models);
    let c = GroupMember::join(&p, GROUP, &models);
    wait_until("the two new scorers to get partitions", TIMEOUT, || {
        b.health.assigned() && c.health.assigned()
    })
    .await;
    let at_three = a.scored() + b.scored() + c.scored();
    eprintln!(
        "1 -> 3 scorers after {:.1} s, {at_three} scored",
        started.elapsed().as_secs_f64()
    );
    wait_until("the three to share the stream", TIMEOUT, || {
        b.scored() > 0
            && c.scored() > 0
            && a.scored() + b.scored() + c.scored() >= at_three + 20_000
    })
    .await;
    let scored_by_b = b.leave().await;
    let at_two = a.scored() + scored_by_b + c.scored();
    eprintln!(
        "3 -> 2 scorers after {:.1} s, {at_two} scored",
        started.elapsed().as_secs_f64()
    );
    assert!(
        at_two < N as u64,
        "the last rebalance came mid-stream: {at_two} of {N} scored"
    );
    assert_eq!(producer.await.unwrap(), N as u64);

    let predictions = read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
        m.len() >= N
            && m.iter()
                .map(|m| m.key().unwrap())
                .collect::<HashSet<_>>()
                .len()
                >= N
    });
    let (scored_by_a, scored_by_c) = (a.leave().await, c.leave().await);
    let input = read_topic(&p.kafka, &p.kafka.topics.input, TIMEOUT, |m| m.len() >= N);
    assert_eq!(input.len(), N);
    // Anything still on its way after the stops is counted too.
    let predictions = {
        let size = topic_size(&p.kafka, &p.kafka.topics.predictions) as usize;
        if size > predictions.len() {
            read_topic(&p.kafka, &p.kafka.topics.predictions, TIMEOUT, |m| {
                m.len() >= size
            })
        } else {
            predictions
        }
    };

    let input_order = keys_by_partition(&input);
    let partition_of: HashMap<&str, i32> = input_order
        .iter()
        .flat_map(|(&partition, keys)| keys.iter().map(move |k| (k.as_str(), partition)))
        .collect();
    assert_eq!(partition_of.len(), N, "record ids are unique");
    let mut copies: HashMap<&str, usize> = HashMap::new();
    let output_order = keys_by_partition(&predictions);
    for (out_partition, keys) in &output_order {
        // Prediction keys are the input keys: same partitioner, same partition count.
        let Some(&in_partition) = partition_of.get(keys[0].as_str()) else {
            panic!("a prediction for {}, never sent", keys[0])
        };
        let expected = &input_order[&in_partition];
        let mut seen: HashSet<&str> = HashSet::new();
        let mut first_seen: Vec<&str> = Vec::with_capacity(expected.len());
        for key in keys {
            match partition_of.get(key.as_str()) {
                Some(&p) if p == in_partition => {}
                Some(&p) => panic!("prediction partition {out_partition} holds {key} of input partition {p}, not {in_partition}"),
                None => panic!("a prediction for {key}, never sent"),
            }
            *copies.entry(key.as_str()).or_default() += 1;
            if seen.insert(key.as_str()) {
                first_seen.push(key.as_str());
            }
        }
        if let Some(at) = first_seen
            .iter()
            .zip(expected.iter())
            .position(|(got, want)| *got != want.as_str())
        {
            panic!(
                "partition {in_partition}: prediction #{at} (first appearances) is {} where the input has {}; around it: {:?}",
                first_seen[at], expected[at], &first_seen[at.saturating_sub(3)..(at + 3).min(first_seen.len())]
            );
        }
        assert_eq!(
            first_seen.len(),
            expected.len(),
            "partition {in_partition}: every record has a prediction"
        );
    }
    assert_eq!(copies.len(), N, "every record has a prediction");
    let duplicates = predictions.len() - N;
    let most_copies = copies.values().copied().max().unwrap_or(0);
    eprintln!(
        "rebalances 1 -> 3 -> 2 on 6 partitions: {N} records, {} predictions, {duplicates} duplicates (at most {most_copies} copies of one record); \
         scored by a {scored_by_a}, b {scored_by_b}, c {scored_by_c}; {:.1} s",
        predictions.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        scored_by_b > 0 && scored_by_c > 0,
        "the scorers that joined took part"
    );
    // The last two left cleanly: the group's commits are at the end of every partition.
    let committed = committed_offsets(&p.kafka, GROUP, &p.kafka.topics.input);
    let ends: HashMap<i32, i64> = input_order
        .iter()
        .map(|(&partition, keys)| (partition, keys.len() as i64))
        .collect();
    assert_eq!(
        committed, ends,
        "committed offsets after the last scorers left"
    );
    // Each rebalance re-scores at most what was in flight at that moment; all of them together
    // stay far below the stream.
    assert!(
        duplicates <= N / 20,
        "{duplicates} duplicates for {N} records"
    );
    assert!(
        most_copies <= 4,
        "a record scored {most_copies} times in three rebalances"
    );
}
