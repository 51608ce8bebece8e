//! The referee: the live duel between the champion and the challenger, and (with
//! `--auto-promote`) the promotion or rollback it decides.
//!
//! While a challenger is published, the referee reads every partition of the predictions and
//! labels topics (group-less: each referee sees the whole duel) from the moment the pair began,
//! as the lifecycle history tells (`LifecycleView::duel_start`), so a restarted referee rebuilds
//! the same duel. Each prediction carries the challenger's shadow score; with its label (in the
//! prediction, or an outcome on the labels topic) it feeds the duel once
//! (`model::duel::pairing`). Every few seconds the duel's figures go to the models topic
//! (`DuelStatus`, shown by the app). With auto-promote, the first verdict is acted on once per
//! duel (`acting`): the record with its evidence, then the seats. Whenever the lineup changes a
//! new duel begins; after a promotion that is the promoted model against the one it replaced,
//! whose verdict rolls back or confirms.
//!
//! Several referees (each `churn analyze` and `churn serve` runs one) reach the same verdict on
//! the same records and write the same records: a decision's key names its duel.
//!
//! By concept: `reading` (the topics, from when the duel began), `acting` (writing a decision).

mod acting;
mod reading;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use model::duel::pairing::{Pairing, PairingBounds};
use model::duel::{DuelConfig, Verdict};
use model::lifecycle::{DuelStatus, EventKind, LifecycleView, Lineup};
use model::ChurnModel;
use rdkafka::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::kafka::{Kafka, SkipLog, PARTITION_CHECK_EVERY};
use crate::metrics::PipelineMetrics;
use crate::model_store::{Followed, ModelsWriter};
use acting::{Decided, Progress};
use reading::{take, Reader, Skipped};

/// How the referee judges and what it may do.
#[derive(Debug, Clone, Copy)]
pub struct RefereeOptions {
    pub duel: DuelConfig,
    /// Act on the verdict: promote, reject, roll back or confirm. Otherwise only report it.
    pub auto_promote: bool,
    /// How often the duel's figures are published (when they changed).
    pub publish_every: Duration,
}

impl Default for RefereeOptions {
    fn default() -> Self {
        RefereeOptions {
            duel: DuelConfig::default(),
            auto_promote: false,
            publish_every: Duration::from_secs(3),
        }
    }
}

/// How far back a duel is read when the history does not say when it began (its events were
/// compacted away, or the models were published before events existed); bounded further by
/// `reading::REREAD_PER_PARTITION`.
pub const LOOK_BACK_WITHOUT_HISTORY: Duration = Duration::from_secs(3_600);
/// Read this much before the duel's start: the event's time is by its writer's clock, the
/// records' by the scorers'. Earlier records are of other models and are passed over.
const CLOCK_MARGIN_MS: i64 = 60_000;
/// How often the verdict is looked at, old records forgotten, and the figures maybe published.
const TICK: Duration = Duration::from_secs(1);
/// How long publishing the figures may hold up reading.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);
/// How long after a failed decision write it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The referee's task, to run until `shutdown` (the caller's supervisor runs it). See the
/// module docs. Fails at once on a wrong duel setting.
pub fn start(
    kafka: Kafka,
    options: RefereeOptions,
    models: &Followed,
    metrics: Arc<PipelineMetrics>,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = Result<()>> + Send + 'static> {
    // A wrong setting stops the command at start, not the task later.
    model::duel::Duel::new(options.duel)?;
    let writer = ModelsWriter::new(&kafka)?;
    let referee = Referee {
        kafka,
        options,
        lineup: models.lineup.clone(),
        lifecycle: models.lifecycle.clone(),
        metrics,
        writer,
        shutdown,
        publish_failed: SkipLog::new("referee: publishing the duel failed"),
    };
    Ok(referee.run())
}

struct Referee {
    kafka: Kafka,
    options: RefereeOptions,
    lineup: watch::Receiver<Lineup>,
    lifecycle: watch::Receiver<Arc<LifecycleView>>,
    metrics: Arc<PipelineMetrics>,
    writer: ModelsWriter,
    shutdown: CancellationToken,
    publish_failed: SkipLog,
}

/// One duel: its models, whether it follows a promotion, and the pairing that counts it.
struct Bout {
    champion: Arc<ChurnModel>,
    challenger: Arc<ChurnModel>,
    after_promotion: bool,
    /// When the duel began, as the history says (None without history).
    began_ms: Option<i64>,
    pairing: Pairing,
    /// Records in the figures last published.
    published: Option<u64>,
}

impl Referee {
    async fn run(mut self) -> Result<()> {
        tracing::info!(
            auto_promote = self.options.auto_promote,
            alpha = self.options.duel.alpha,
            min_records = self.options.duel.min_records,
            "referee started"
        );
        let mut unfinished: Option<Decided> = None;
        while !self.shutdown.is_cancelled() {
            if let Some(decided) = unfinished.take() {
                unfinished = self.finish(decided).await;
                continue;
            }
            let lineup = self.lineup.borrow_and_update().clone();
            let Some(challenger) = lineup.shadow().cloned() else {
                self.show(None);
                self.wait_for_lineup().await;
                continue;
            };
            let start = self
                .lifecycle
                .borrow()
                .duel_start(&lineup.champion.version, &challenger.version);
            let now = chrono::Utc::now().timestamp_millis();
            let since = match start {
                Some(start) => start.at_ms.min(now) - CLOCK_MARGIN_MS,
                None => now - LOOK_BACK_WITHOUT_HISTORY.as_millis() as i64,
            };
            let bout = Bout {
                pairing: Pairing::new(
                    lineup.champion.version.as_str(),
                    challenger.version.as_str(),
                    self.options.duel,
                    PairingBounds::default(),
                )?,
                champion: lineup.champion.clone(),
                challenger,
                after_promotion: start.is_some_and(|s| s.after_promotion),
                began_ms: start.map(|s| s.at_ms),
                published: None,
            };
            tracing::info!(
                champion = %bout.champion.version, challenger = %bout.challenger.version,
                after_promotion = bout.after_promotion, history = start.is_some(),
                "duel begins"
            );
            unfinished = self.judge(bout, since).await?;
        }
        self.show(None);
        crate::kafka::close_within(self.writer, "referee producer").await;
        Ok(())
    }

    /// Until the lineup changes (or the stop).
    async fn wait_for_lineup(&mut self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            changed = self.lineup.changed() => {
                // The follower ends only at the stop.
                if changed.is_err() {
                    self.shutdown.cancelled().await;
                }
            }
        }
    }

    /// Reads and judges one duel until the lineup changes or the stop. Returns a decision whose
    /// writing failed, for the caller to finish.
    async fn judge(&mut self, mut bout: Bout, since_ms: i64) -> Result<Option<Decided>> {
        let Some(mut reader) = Reader::open(&self.kafka, since_ms, &self.shutdown).await? else {
            return Ok(None);
        };
        let predictions = self.kafka.topics.predictions.clone();
        let mut skipped = Skipped::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut published_at, mut checked_at) = (Instant::now(), Instant::now());
        let mut failed = None;
        let mut stream_time: Option<i64> = None;
        // Its own handle: a message borrows the consumer while the reader notes it.
        let consumer = reader.consumer.clone();
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                changed = self.lineup.changed() => {
                    // The follower ends only at the stop.
                    if changed.is_err() {
                        self.shutdown.cancelled().await;
                    }
                    break;
                }
                _ = tick.tick() => {
                    // By stream time, not the wall clock: a restart re-reading a duel older
                    // than a day must still pair its old predictions with their outcomes.
                    if let Some(newest) = stream_time {
                        bout.pairing.forget_older(newest);
                    }
                    self.show(Some(&bout));
                    if published_at.elapsed() >= self.options.publish_every {
                        published_at = Instant::now();
                        self.publish(&mut bout).await;
                    }
                    if checked_at.elapsed() >= PARTITION_CHECK_EVERY {
                        checked_at = Instant::now();
                        reader.read_added(&self.shutdown).await;
                    }
                    if let Some(decided) = self.verdict(&bout).filter(|_| reader.caught_up()) {
                        // The last figures, with the verdict, before the decision's records.
                        self.publish(&mut bout).await;
                        if let Err(e) = decided.carry_out(&self.writer, &self.shutdown).await {
                            tracing::warn!("referee: writing the decision ({}) failed, retrying: {e:#}", decided.kind.describe());
                            failed = Some(decided);
                        } else {
                            tracing::info!(
                                decision = decided.kind.describe(),
                                champion = %bout.champion.version, challenger = %bout.challenger.version,
                                records = decided.evidence.records,
                                "duel decided"
                            );
                        }
                        // Once per duel: the lineup changes next (or a retry takes over).
                        break;
                    }
                }
                message = consumer.recv() => match message {
                    Ok(m) => {
                        reader.note(m.topic(), m.partition(), m.offset());
                        let now = chrono::Utc::now().timestamp_millis();
                        let timestamp = m.timestamp().to_millis().unwrap_or(now);
                        // A future-stamped record (a wrong clock) moves stream time no further
                        // than the wall clock.
                        stream_time = stream_time.max(Some(timestamp.min(now)));
                        take(&mut bout.pairing, &predictions, m.topic(), timestamp, m.key(), m.payload(), &mut skipped);
                    }
                    Err(e) => {
                        tracing::debug!("referee: {e}");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => {}
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                },
            }
        }
        let counts = bout.pairing.counts();
        tracing::info!(
            champion = %bout.champion.version, challenger = %bout.challenger.version,
            records = counts.counted, duplicates = counts.duplicates,
            other_models = counts.other_pair, skipped = skipped.total(),
            "duel ends"
        );
        reader.close().await;
        if failed.is_none() && !self.shutdown.is_cancelled() {
            // A decided duel waits here for the lineup it wrote.
            self.wait_for_lineup_change_after_decision().await;
        }
        Ok(failed)
    }

    /// After a decision is written, the duel's lineup changes within moments (when the
    /// follower reads the seats): nothing to read until then.
    async fn wait_for_lineup_change_after_decision(&mut self) {
        if self.lineup.has_changed().unwrap_or(true) {
            return;
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = self.lineup.changed() => {}
            // Not within this long: look again (a new duel of the same pair decides again,
            // and its records are the same ones).
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }

    /// The decision the verdict calls for, when acting and the lineup is still the duel's.
    fn verdict(&self, bout: &Bout) -> Option<Decided> {
        if !self.options.auto_promote {
            return None;
        }
        let decision = bout.pairing.duel().decision();
        let kind = EventKind::of_verdict(decision.verdict, bout.after_promotion)?;
        let decided = Decided {
            kind,
            champion: bout.champion.clone(),
            challenger: bout.challenger.clone(),
            duel_began_ms: bout.began_ms,
            evidence: decision.evidence,
        };
        (decided.progress(&self.lineup.borrow()) == Progress::Due).then_some(decided)
    }

    /// Writes a decision cut short again while the lineup is still on its way; gives up when
    /// someone else changed it. Returns it when it is still unfinished.
    async fn finish(&mut self, decided: Decided) -> Option<Decided> {
        let progress = decided.progress(&self.lineup.borrow_and_update());
        match progress {
            Progress::Done => None,
            Progress::Overtaken => {
                tracing::warn!(
                    decision = decided.kind.describe(),
                    "referee: the lineup changed by another hand before the decision was written whole; leaving it"
                );
                None
            }
            Progress::Due => {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                }
                match decided.carry_out(&self.writer, &self.shutdown).await {
                    Ok(()) => {
                        tracing::info!(
                            decision = decided.kind.describe(),
                            "duel decided (written on a retry)"
                        );
                        None
                    }
                    Err(e) if !self.shutdown.is_cancelled() => {
                        tracing::warn!("referee: writing the decision failed again: {e:#}");
                        Some(decided)
                    }
                    Err(e) => {
                        tracing::warn!("referee: stopped while writing the decision: {e:#}");
                        None
                    }
                }
            }
        }
    }

    /// The figures to the models topic, when they changed since last published.
    async fn publish(&mut self, bout: &mut Bout) {
        let duel = bout.pairing.duel();
        if bout.published == Some(duel.records()) {
            return;
        }
        let status = DuelStatus {
            champion: bout.champion.version.clone(),
            challenger: bout.challenger.version.clone(),
            after_promotion: bout.after_promotion,
            auto_promote: self.options.auto_promote,
            report: duel.report(),
            decision: duel.decision(),
            updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let sent = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            sent = tokio::time::timeout(PUBLISH_WAIT, self.writer.duel(&status)) => sent,
        };
        match sent {
            Ok(Ok(())) => bout.published = Some(duel.records()),
            Ok(Err(e)) => self.publish_failed.skip(&format!("{e:#}"), b""),
            Err(_) => self.publish_failed.skip(
                &format!("no acknowledgement within {} s", PUBLISH_WAIT.as_secs()),
                b"",
            ),
        }
    }

    /// The duel in the metrics.
    fn show(&self, bout: Option<&Bout>) {
        let (records, verdict) = bout.map_or((0, 0), |b| {
            let decision = b.pairing.duel().decision();
            let verdict = match decision.verdict {
                Verdict::ChallengerBetter => 1,
                Verdict::ChampionBetter => -1,
                Verdict::Undecided => 0,
            };
            (decision.evidence.records, verdict)
        });
        self.metrics
            .duel_records
            .set(i64::try_from(records).unwrap_or(i64::MAX));
        self.metrics.duel_verdict.set(verdict);
    }
}
