//! The models topic: the champion, the challenger, the live duel and the lifecycle's history,
//! each under its key (`model::lifecycle`), published here and followed by every scorer and web
//! server.
//!
//! Live model updates, the distributed way: a follower swaps to each new champion and
//! challenger as it arrives. The swap is a `watch` channel: the scorer takes the lineup once per
//! batch, so a batch in flight finishes with the models it started with and nothing is dropped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use model::lifecycle::{
    DuelStatus, EventKind, Key, LifecycleView, Lineup, ModelEvent, CHALLENGER_KEY, CHAMPION_KEY,
    DUEL_KEY,
};
use model::{ChurnModel, ModelFileError};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ModelTrust;
use crate::kafka::{tail_messages, Kafka, SkipLog};

/// How long one record may take to be acknowledged.
const SEND_WAIT: Duration = Duration::from_secs(30);

/// Writes to the models topic; one producer for a process's many records (the referee's duel
/// every few seconds).
pub struct ModelsWriter {
    producer: FutureProducer,
    topic: String,
}

impl ModelsWriter {
    pub fn new(kafka: &Kafka) -> Result<Self> {
        Ok(ModelsWriter {
            producer: kafka.idempotent_producer()?,
            topic: kafka.topics.models.clone(),
        })
    }

    /// One record, acknowledged; `None` is a tombstone.
    async fn send(&self, key: &str, payload: Option<&[u8]>) -> Result<()> {
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.producer
            .send(record, SEND_WAIT)
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("writing {key} to {}", self.topic))?;
        Ok(())
    }

    /// The champion: every follower switches to it within moments.
    pub async fn champion(&self, model: &ChurnModel) -> Result<()> {
        self.send(CHAMPION_KEY, Some(model.to_json().as_bytes()))
            .await
            .with_context(|| format!("publishing model {}", model.version))
    }

    /// The challenger (`None` withdraws it): every scorer scores it in the shadow.
    pub async fn challenger(&self, model: Option<&ChurnModel>) -> Result<()> {
        let json = model.map(ChurnModel::to_json);
        self.send(CHALLENGER_KEY, json.as_deref().map(str::as_bytes))
            .await
            .context("publishing the challenger")
    }

    pub async fn event(&self, event: &ModelEvent) -> Result<()> {
        let json = serde_json::to_vec(event).context("encoding an event")?;
        self.send(&event.key(), Some(&json)).await
    }

    pub async fn duel(&self, duel: &DuelStatus) -> Result<()> {
        let json = serde_json::to_vec(duel).context("encoding the duel")?;
        self.send(DUEL_KEY, Some(&json)).await
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A hand action's record: by `by`, now.
fn hand_event(
    kind: EventKind,
    champion: Option<&str>,
    challenger: Option<&str>,
    by: &str,
) -> ModelEvent {
    ModelEvent {
        kind,
        at: now(),
        champion_before: None,
        champion_after: champion.map(str::to_owned),
        challenger_before: None,
        challenger_after: challenger.map(str::to_owned),
        duel_began_ms: None,
        evidence: None,
        by: by.to_owned(),
    }
}

/// Publishes a champion without recording who did (tests, older callers): see
/// [`publish_champion`].
pub async fn publish(kafka: &Kafka, model: &ChurnModel) -> Result<()> {
    publish_champion(kafka, model, "churn publish").await
}

/// Publishes a champion by hand (`by` names who) and then records it in the history (the seat
/// first: the history never names a model that was not published). A challenger with the same
/// version is no longer scored in the shadow (`Lineup::shadow`): it has nothing left to prove.
pub async fn publish_champion(kafka: &Kafka, model: &ChurnModel, by: &str) -> Result<()> {
    let writer = ModelsWriter::new(kafka)?;
    writer.champion(model).await?;
    writer
        .event(&hand_event(
            EventKind::ChampionPublished,
            Some(&model.version),
            None,
            by,
        ))
        .await?;
    tracing::info!(version = %model.version, topic = %kafka.topics.models, by, "champion published");
    Ok(())
}

/// Publishes a challenger (`by` names who) and records it: every scorer scores it in the
/// shadow, and the referee's duel compares it with the champion.
pub async fn publish_challenger(kafka: &Kafka, model: &ChurnModel, by: &str) -> Result<()> {
    let writer = ModelsWriter::new(kafka)?;
    writer.challenger(Some(model)).await?;
    writer
        .event(&hand_event(
            EventKind::ChallengerPublished,
            None,
            Some(&model.version),
            by,
        ))
        .await?;
    tracing::info!(version = %model.version, topic = %kafka.topics.models, by, "challenger published");
    Ok(())
}

/// Withdraws the challenger by hand and records it.
pub async fn withdraw_challenger(kafka: &Kafka, by: &str) -> Result<()> {
    let writer = ModelsWriter::new(kafka)?;
    writer.challenger(None).await?;
    writer
        .event(&hand_event(EventKind::ChallengerWithdrawn, None, None, by))
        .await?;
    tracing::info!(topic = %kafka.topics.models, by, "challenger withdrawn");
    Ok(())
}

fn models_consumer(kafka: &Kafka) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = kafka
        .consumer_config(
            "churn-model-follower",
            &[
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create()
        .context("creating the models consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&kafka.topics.models, 0, Offset::Beginning)?;
    consumer
        .assign(&assignment)
        .context("reading the models topic")?;
    Ok(consumer)
}

/// A model from the topic, if it is one that `trust` accepts; the others are logged, counted and
/// skipped, so the model in use stays.
pub(super) fn parse(payload: Option<&[u8]>, trust: &ModelTrust) -> Option<ChurnModel> {
    let verified = match std::str::from_utf8(payload?) {
        Ok(text) => trust.verify(text),
        Err(_) => {
            trust.refused.inc();
            Err(ModelFileError::Invalid("not UTF-8 text".into()))
        }
    };
    match verified {
        Ok(model) => Some(model),
        Err(e) => {
            // Cut: the error may quote what a hostile producer wrote.
            tracing::warn!(
                "refusing a model on the models topic, keeping the current one: {}",
                model::record::truncate_utf8(&e.to_string(), 300)
            );
            None
        }
    }
}

/// What a follower has read so far.
struct Reading {
    trust: ModelTrust,
    champion: Option<Arc<ChurnModel>>,
    challenger: Option<Arc<ChurnModel>>,
    view: LifecycleView,
    /// Duel and event records that are not what they say (logged at most once a minute).
    unreadable: SkipLog,
}

impl Reading {
    fn new(trust: ModelTrust) -> Self {
        Reading {
            trust,
            champion: None,
            challenger: None,
            view: LifecycleView::default(),
            unreadable: SkipLog::new("skipping an unreadable lifecycle record on the models topic"),
        }
    }

    /// Takes one record. Models are verified; events and the duel are only shown, never acted
    /// on, so a malformed one is skipped with a log line.
    fn apply(&mut self, key: Option<&[u8]>, payload: Option<&[u8]>) {
        match Key::of(key) {
            Key::Champion => {
                if let Some(model) = parse(payload, &self.trust) {
                    self.champion = Some(Arc::new(model));
                }
            }
            Key::Challenger => match payload {
                None | Some([]) => self.challenger = None,
                Some(_) => {
                    if let Some(model) = parse(payload, &self.trust) {
                        self.challenger = Some(Arc::new(model));
                    }
                }
            },
            Key::Duel => match payload.map(serde_json::from_slice::<DuelStatus>) {
                None => self.view.duel = None,
                Some(Ok(duel)) => self.view.duel = Some(duel),
                Some(Err(e)) => self.unreadable.skip(&e, payload.unwrap_or_default()),
            },
            Key::Event => match payload.map(serde_json::from_slice::<ModelEvent>) {
                None => {}
                // Its key must be the one its content gives: a record cannot take the place
                // (and so the first-kept slot) of another decision's.
                Some(Ok(event)) if key != Some(event.key().as_bytes()) => self.unreadable.skip(
                    &"an event under a key that is not its own",
                    payload.unwrap_or_default(),
                ),
                Some(Ok(event)) => {
                    if let Err(e) = self
                        .view
                        .record(event, chrono::Utc::now().timestamp_millis())
                    {
                        self.unreadable.skip(&e, payload.unwrap_or_default());
                    }
                }
                Some(Err(e)) => self.unreadable.skip(&e, payload.unwrap_or_default()),
            },
            Key::Other => {}
        }
    }

    /// The lifecycle as shown: the duel only while it is between the models in use.
    fn view(&self) -> LifecycleView {
        let champion = self.champion.as_ref().map(|m| m.version.clone());
        let challenger = self.challenger.as_ref().map(|m| m.version.clone());
        let duel = self.view.duel.clone().filter(|d| {
            Some(&d.champion) == champion.as_ref() && Some(&d.challenger) == challenger.as_ref()
        });
        LifecycleView {
            champion,
            challenger,
            duel,
            history: self.view.history.clone(),
        }
    }
}

/// Reads the models topic from its start to its end as seen now: everything published so far,
/// verified as `trust` says; and the reader, positioned to follow what comes next.
async fn catch_up(kafka: &Kafka, trust: ModelTrust) -> Result<(StreamConsumer, Reading)> {
    let consumer = models_consumer(kafka)?;
    let topic = kafka.topics.models.clone();
    // On a thread of its own, not blocking this future: a stop meanwhile abandons the wait.
    let asked = {
        let topic = topic.clone();
        crate::kafka::on_own_thread(
            move || {
                let end = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10));
                (consumer, end)
            },
            Duration::from_secs(11),
        )
    };
    let (consumer, end) = asked
        .await
        .with_context(|| format!("no answer reading the end of {topic}"))?;
    let (_, high) = end.with_context(|| format!("reading the end of {topic}"))?;
    let mut reading = Reading::new(trust);
    if high > 0 {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
                .await
                .with_context(|| format!("timed out reading {topic}"))??;
            reading.apply(message.key(), message.payload());
            if message.offset() + 1 >= high {
                break;
            }
        }
    }
    Ok((consumer, reading))
}

/// The lifecycle as published so far (the lineup's versions, the duel, the history), read once:
/// for commands that look before they publish (`churn retrain`).
pub async fn current_lifecycle(kafka: &Kafka, trust: ModelTrust) -> Result<LifecycleView> {
    let (consumer, reading) = catch_up(kafka, trust).await?;
    crate::kafka::close_within(consumer, "models topic reader").await;
    Ok(reading.view())
}

/// What following the models topic gives: the lineup to score with, and the lifecycle to show.
pub struct Followed {
    pub lineup: watch::Receiver<Lineup>,
    pub lifecycle: watch::Receiver<Arc<LifecycleView>>,
}

/// Starts following the models topic. Returns the lineup to use now (the newest published
/// champion that `trust` accepts, or `fallback` when none is, with the newest challenger) and
/// the task that keeps it updated until `shutdown` (for the caller's supervisor to run).
pub async fn follow(
    kafka: &Kafka,
    fallback: Option<ChurnModel>,
    trust: ModelTrust,
    shutdown: CancellationToken,
) -> Result<(
    Followed,
    impl std::future::Future<Output = Result<()>> + Send + 'static,
)> {
    let topic = kafka.topics.models.clone();
    let requires_signature = trust.requires_signature();
    let (consumer, mut reading) = catch_up(kafka, trust).await?;
    let champion = match (reading.champion.clone(), fallback) {
        (Some(model), _) => {
            tracing::info!(version = %model.version, "using the newest published model");
            model
        }
        (None, Some(model)) => Arc::new(model),
        (None, None) if requires_signature => anyhow::bail!(
            "no model: none signed with the signing key is published on {topic} and no model file was given; train one with `churn train --publish --model-signing-key KEY`"
        ),
        (None, None) => anyhow::bail!(
            "no model: none is published on {topic} and no model file was given; train one with `churn train --publish`"
        ),
    };
    reading.champion = Some(champion.clone());
    if let Some(challenger) = &reading.challenger {
        tracing::info!(version = %challenger.version, "scoring a challenger in the shadow");
    }
    let (lineup_tx, lineup) = watch::channel(Lineup {
        champion,
        challenger: reading.challenger.clone(),
    });
    let (view_tx, lifecycle) = watch::channel(Arc::new(reading.view()));
    let task = async move {
        tail_messages(&consumer, "models topic", shutdown, |key, payload| {
            reading.apply(key, payload);
            let next = Lineup {
                champion: reading.champion.clone().expect("set before following"),
                challenger: reading.challenger.clone(),
            };
            lineup_tx.send_if_modified(|current| {
                let versions = |l: &Lineup| {
                    (
                        l.champion.version.clone(),
                        l.challenger.as_ref().map(|c| c.version.clone()),
                    )
                };
                if versions(current) == versions(&next) {
                    return false;
                }
                tracing::info!(
                    from = %current.champion.version, to = %next.champion.version,
                    challenger = next.challenger.as_ref().map(|c| c.version.as_str()).unwrap_or("none"),
                    "switching models"
                );
                *current = next;
                true
            });
            let view = reading.view();
            view_tx.send_if_modified(|current| {
                let changed = **current != view;
                if changed {
                    *current = Arc::new(view);
                }
                changed
            });
        })
        .await;
        crate::kafka::close_within(consumer, "models topic reader").await;
        Ok(())
    };
    Ok((Followed { lineup, lifecycle }, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::SigningKey;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(vec![byte; 32]).unwrap()
    }

    fn model(seed: u64) -> ChurnModel {
        let customers = model::synth::generate_customers(&model::synth::GenerateOptions {
            rows: 200,
            seed,
            messy_fraction: 0.0,
        });
        model::train::train(&customers, &Default::default(), "t".into(), |_| {}).unwrap()
    }

    #[test]
    fn the_follower_takes_only_what_trust_accepts() {
        let trust = ModelTrust::signed_by(key(1));
        let mut signed = model(5);
        signed.sign(&key(1));
        assert_eq!(
            parse(Some(signed.to_json().as_bytes()), &trust),
            Some(signed.clone())
        );
        let mut other = model(5);
        other.sign(&key(2));
        let mut weight = signed.clone();
        weight.features[0].coefficient += 0.25;
        let mut threshold = signed.clone();
        threshold.threshold = 0.01;
        let hostile: Vec<Vec<u8>> = vec![
            model(5).to_json().into_bytes(),
            other.to_json().into_bytes(),
            weight.to_json().into_bytes(),
            threshold.to_json().into_bytes(),
            vec![0xff, 0xfe, 0x00],
            b"{}".to_vec(),
        ];
        for payload in &hostile {
            assert_eq!(parse(Some(payload), &trust), None);
        }
        assert_eq!(parse(None, &trust), None);
        assert_eq!(trust.refused(), hostile.len() as u64);
    }

    fn reading() -> Reading {
        Reading::new(ModelTrust::default())
    }

    #[test]
    fn each_key_goes_to_its_seat_and_a_tombstone_withdraws_the_challenger() {
        let (a, b) = (model(1), model(2));
        let mut r = reading();
        r.apply(Some(CHAMPION_KEY.as_bytes()), Some(a.to_json().as_bytes()));
        r.apply(
            Some(CHALLENGER_KEY.as_bytes()),
            Some(b.to_json().as_bytes()),
        );
        assert_eq!(r.champion.as_deref(), Some(&a));
        assert_eq!(r.challenger.as_deref(), Some(&b));
        // Not ours, a forged duel, a forged event: nothing in the lineup moves.
        r.apply(Some(b"someone-else"), Some(b.to_json().as_bytes()));
        r.apply(Some(DUEL_KEY.as_bytes()), Some(b"{\"champion\": 1}"));
        r.apply(Some(b"churn-event/x"), Some(&[0xff; 40]));
        r.apply(Some(CHALLENGER_KEY.as_bytes()), Some(b"not a model"));
        assert_eq!(r.champion.as_deref(), Some(&a));
        assert_eq!(
            r.challenger.as_deref(),
            Some(&b),
            "a bad challenger record changes nothing"
        );
        assert_eq!(r.view().history.len(), 0);
        // An event under another event's key (to take its place in the history): skipped.
        let event = hand_event(EventKind::ChallengerPublished, None, Some(&b.version), "x");
        let json = serde_json::to_vec(&event).unwrap();
        r.apply(Some(b"churn-event/promoted/m-a/m-b/1"), Some(&json));
        assert_eq!(r.view().history.len(), 0);
        r.apply(Some(event.key().as_bytes()), Some(&json));
        assert_eq!(r.view().history.len(), 1, "under its own key it is taken");
        r.apply(Some(CHALLENGER_KEY.as_bytes()), None);
        assert_eq!(r.challenger, None);
        // A record without a key is a champion, as before keys had meanings.
        r.apply(None, Some(b.to_json().as_bytes()));
        assert_eq!(r.champion.as_deref(), Some(&b));
    }

    #[test]
    fn the_duel_is_shown_only_while_it_is_between_the_models_in_use() {
        let (a, b) = (model(1), model(2));
        let mut r = reading();
        r.apply(Some(CHAMPION_KEY.as_bytes()), Some(a.to_json().as_bytes()));
        r.apply(
            Some(CHALLENGER_KEY.as_bytes()),
            Some(b.to_json().as_bytes()),
        );
        let duel = DuelStatus {
            champion: a.version.clone(),
            challenger: b.version.clone(),
            after_promotion: false,
            auto_promote: true,
            report: None,
            decision: model::duel::Duel::new(Default::default())
                .unwrap()
                .decision(),
            updated_at: now(),
        };
        r.apply(
            Some(DUEL_KEY.as_bytes()),
            Some(&serde_json::to_vec(&duel).unwrap()),
        );
        assert_eq!(r.view().duel, Some(duel));
        r.apply(Some(CHALLENGER_KEY.as_bytes()), None);
        assert_eq!(r.view().duel, None, "a stale duel is not shown");
    }
}
