//! `churn retrain`: continuous training. Each round reads the labelled records of a recent
//! window back from Kafka (`server::labelled`), trains on them with `churn train`'s options,
//! prints the cross-validated report and publishes the model as the challenger: every scorer
//! scores it in the shadow, and the duel decides whether it replaces the champion.

use std::time::Duration;

use anyhow::{Context, Result};
use model::lifecycle::LifecycleView;
use model::{ChurnModel, SigningKey};
use server::kafka::{parse_retention, Kafka, KafkaArgs};
use server::labelled::{read_labelled, Labelled, ReadOptions};
use server::model_store;
use server::shutdown::during_start_up;

use super::signing::SignArgs;
use super::train::TrainFlags;

/// Who the models topic's history says published the challenger.
const PUBLISHED_BY: &str = "churn retrain";

#[derive(clap::Args)]
pub struct RetrainArgs {
    /// Label the records with the outcomes on the labels topic (`{"Churn": 1}` keyed by the
    /// record id, as the analytics reads them for live quality), read over the same window; an
    /// outcome wins over a record's own Churn field (it was observed later). Without it, only
    /// records that carry their own Churn are used (a replayed labelled CSV, say).
    #[arg(long)]
    from_outcomes: bool,
    /// How far back to read the input topic (and the outcomes), from the start of each round:
    /// e.g. 7d, 12h, 90min. By record timestamp, all partitions, up to the end seen at the start.
    #[arg(long, default_value = "7d", value_parser = parse_retention)]
    window: Duration,
    /// Retrain this often (e.g. 1h) until Ctrl-C or SIGTERM; a failed round (too few records, a
    /// broker away) is logged and tried again at the next. Without it: one round, whose failure
    /// is the command's.
    #[arg(long, value_parser = parse_retention)]
    every: Option<Duration>,
    /// A challenger already in its duel is left to it: a round publishes only when the
    /// challenger's seat is free, or its duel has gone this long without a verdict (e.g. 1d;
    /// equal models never decide). A new challenger would start the duel over, and the records
    /// scored before it would never count.
    #[arg(long, default_value = "1d", value_parser = parse_retention)]
    replace_after: Duration,
    /// Most labelled records to train on: the newest of the window. Also the most outcomes held.
    /// Bounds memory (roughly 1 KB a record).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_records: u64,
    /// Refuse to publish a model trained on fewer labelled records than this.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    min_records: u64,
    /// Nor one trained on fewer churners, or fewer stayers, than this.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    min_per_class: u64,
    #[command(flatten)]
    training: TrainFlags,
    #[command(flatten)]
    signing: SignArgs,
}

/// Why a round did not publish: the window holds too little to learn from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TooFew {
    #[error(
        "only {got} labelled records in the last {window} (at least {need} needed, \
         --min-records): widen --window, wait for more outcomes on the labels topic{outcomes}, or \
         lower --min-records"
    )]
    Records {
        got: usize,
        need: u64,
        window: String,
        outcomes: &'static str,
    },
    #[error(
        "only {got} {class} among the {of} labelled records of the last {window} (at least {need} \
         needed, --min-per-class): widen --window so that both outcomes are represented, or lower \
         --min-per-class"
    )]
    Class {
        class: &'static str,
        got: usize,
        of: usize,
        need: u64,
        window: String,
    },
}

/// Whether `labelled` is enough to train a challenger worth a duel.
fn enough(labelled: &Labelled, args: &RetrainArgs) -> Result<(), TooFew> {
    let window = humantime::format_duration(args.window).to_string();
    let total = labelled.customers.len();
    if (total as u64) < args.min_records {
        return Err(TooFew::Records {
            got: total,
            need: args.min_records,
            window,
            outcomes: if args.from_outcomes {
                ""
            } else {
                " (and pass --from-outcomes to use them)"
            },
        });
    }
    let churners = labelled.churners();
    for (class, got) in [("churners", churners), ("stayers", total - churners)] {
        if (got as u64) < args.min_per_class {
            return Err(TooFew::Class {
                class,
                got,
                of: total,
                need: args.min_per_class,
                window,
            });
        }
    }
    Ok(())
}

pub async fn run(args: &RetrainArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let stop = server::shutdown::on_signals();
    // A bad key file stops the command before the first round, not after it.
    let key = args.signing.key()?;
    let kafka = during_start_up(&stop, super::connect(kafka_args)).await?;
    let mut last_published = None;
    loop {
        let round = round(&kafka, args, key.as_ref(), last_published.as_deref());
        match (stop.run_until_cancelled(round).await, args.every) {
            (None, _) => {
                eprintln!("stopped: this round is abandoned, nothing more is published");
                return Ok(());
            }
            (Some(Ok(version)), _) => last_published = version,
            (Some(Err(e)), None) => return Err(e),
            (Some(Err(e)), Some(every)) => tracing::warn!(
                "this retraining round failed; trying again in {}: {e:#}",
                humantime::format_duration(every)
            ),
        }
        let Some(every) = args.every else {
            return Ok(());
        };
        eprintln!(
            "next round in {} (Ctrl-C to stop)",
            humantime::format_duration(every)
        );
        if stop
            .run_until_cancelled(tokio::time::sleep(every))
            .await
            .is_none()
        {
            return Ok(());
        }
    }
}

/// Why the challenger's seat is taken, if it is: a challenger in a duel that began less than
/// `replace_after` before `now_ms` (the lifecycle's history says when; without history the
/// seat counts as free).
fn seat_taken(view: &LifecycleView, replace_after: Duration, now_ms: i64) -> Option<String> {
    let (champion, challenger) = (view.champion.as_deref()?, view.challenger.as_deref()?);
    if champion == challenger {
        return None;
    }
    let began = view.duel_start(champion, challenger)?;
    let age_ms = now_ms.saturating_sub(began.at_ms).max(0);
    (age_ms < replace_after.as_millis() as i64).then(|| {
        let what = if began.after_promotion {
            "is watched for a rollback of the promotion"
        } else {
            "is in its duel"
        };
        format!(
            "challenger {challenger} {what} against {champion} since {} ago; this round publishes \
             nothing (a new challenger would start the duel over): it waits until the duel \
             decides, the challenger is withdrawn, or the duel has run --replace-after {}",
            humantime::format_duration(Duration::from_secs((age_ms / 1000) as u64)),
            humantime::format_duration(replace_after)
        )
    })
}

/// One round: look at the seat, read, check, train, publish. Returns the version now the
/// challenger (the last published, when the seat was taken).
async fn round(
    kafka: &Kafka,
    args: &RetrainArgs,
    key: Option<&SigningKey>,
    last_published: Option<&str>,
) -> Result<Option<String>> {
    let view = model_store::current_lifecycle(kafka, model_store::ModelTrust::default()).await?;
    if let Some(why) = seat_taken(
        &view,
        args.replace_after,
        chrono::Utc::now().timestamp_millis(),
    ) {
        eprintln!("{why}");
        return Ok(last_published.map(str::to_owned));
    }
    eprintln!(
        "reading the records of the last {} on {}{} ...",
        humantime::format_duration(args.window),
        kafka.topics.input,
        if args.from_outcomes {
            format!(", labelled by the outcomes on {}", kafka.topics.labels)
        } else {
            String::new()
        }
    );
    let labelled = read_labelled(
        kafka,
        &ReadOptions {
            window: args.window,
            max_records: usize::try_from(args.max_records).unwrap_or(usize::MAX),
            with_outcomes: args.from_outcomes,
        },
    )
    .await?;
    report(&labelled);
    enough(&labelled, args)?;
    let (flags, customers) = (args.training.clone(), labelled.customers);
    let mut model = tokio::task::spawn_blocking(move || flags.fit(&customers))
        .await
        .context("training panicked")??;
    if let Some(key) = key {
        model.sign(key);
    }
    super::model_info::print_model(&model);
    if last_published == Some(model.version.as_str()) {
        // Same data, same version: publishing it again would only add a record to the history.
        println!(
            "\n{} is the model the last round published (no new labelled records): not published again",
            model.version
        );
        return Ok(Some(model.version));
    }
    publish(kafka, &model).await?;
    Ok(Some(model.version))
}

async fn publish(kafka: &Kafka, model: &ChurnModel) -> Result<()> {
    model_store::publish_challenger(kafka, model, PUBLISHED_BY).await?;
    println!(
        "\npublished {} as the challenger on {}: scorers score it in the shadow, the duel decides",
        model.version, kafka.topics.models
    );
    Ok(())
}

/// What the window held, on stderr for the person running the command.
fn report(labelled: &Labelled) {
    let c = &labelled.counts;
    eprintln!(
        "since {}: {} records read, {} labelled ({} by an outcome, {} by their own Churn; {} \
         outcomes overrode the record's own), {} without a label, {} invalid (skipped)",
        labelled
            .since
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        c.records,
        c.by_outcome + c.by_record,
        c.by_outcome,
        c.by_record,
        c.outcome_overrode_record,
        c.unlabelled,
        c.invalid,
    );
    if c.outcomes > 0 {
        eprintln!(
            "outcomes: {} read, {} unusable (no record id key or no Churn value)",
            c.outcomes, c.outcomes_unusable
        );
    }
    if c.over_limit + c.outcomes_over_limit > 0 {
        eprintln!(
            "--max-records: kept the newest; {} older labelled records and {} older outcomes let go",
            c.over_limit, c.outcomes_over_limit
        );
    }
    eprintln!(
        "training on {} labelled records ({} churners)",
        labelled.customers.len(),
        labelled.churners()
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use model::synth::{generate_customers, GenerateOptions};
    use server::labelled::JoinCounts;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<RetrainArgs, clap::Error> {
        let cli =
            Cli::try_parse_from(["churn", "retrain"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Retrain(args) => Ok(args),
            _ => unreachable!(),
        }
    }

    fn labelled(rows: usize, churners: usize) -> Labelled {
        let mut customers = generate_customers(&GenerateOptions {
            rows,
            seed: 1,
            messy_fraction: 0.0,
        });
        for (i, c) in customers.iter_mut().enumerate() {
            c.churn = Some(i < churners);
        }
        Labelled {
            customers,
            counts: JoinCounts::default(),
            since: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_issues_command_line_parses_and_nonsense_is_refused() {
        let args = parse(&["--from-outcomes", "--window", "7d", "--every", "1h"]).unwrap();
        assert!(args.from_outcomes);
        assert_eq!(args.window, Duration::from_secs(7 * 86_400));
        assert_eq!(args.every, Some(Duration::from_secs(3600)));
        let once = parse(&[]).unwrap();
        assert_eq!((once.every, once.from_outcomes), (None, false));
        assert_eq!(once.training.options().folds, 5, "churn train's defaults");
        for bad in [
            &["--window", "0s"][..],
            &["--window", "soon"],
            &["--window", "-1h"],
            &["--every", "0s"],
            &["--every", "20y"],
            &["--max-records", "0"],
            &["--max-records", "-5"],
            &["--min-records", "0"],
            &["--min-per-class", "0"],
            &["--folds", "1"],
            &["--l2", "-1"],
            &["--features", "Shoe_Size"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        // churn train's flags, shared rather than copied.
        let tuned = parse(&["--folds", "3", "--l2", "0.5", "--seed", "9", "--strict"]).unwrap();
        let options = tuned.training.options();
        assert_eq!(
            (options.folds, options.l2, options.seed, options.strict),
            (3, 0.5, 9, true)
        );
    }

    #[test]
    fn too_few_records_or_too_few_of_a_class_is_refused_with_what_to_do() {
        let args = parse(&["--min-records", "100", "--min-per-class", "10"]).unwrap();
        assert_eq!(enough(&labelled(100, 10), &args), Ok(()));

        let few = enough(&labelled(99, 50), &args).unwrap_err();
        assert!(matches!(few, TooFew::Records { got: 99, .. }), "{few:?}");
        let text = few.to_string();
        for hint in ["--window", "--min-records", "--from-outcomes", "7days"] {
            assert!(text.contains(hint), "{hint} in {text}");
        }
        let with_outcomes = parse(&["--from-outcomes", "--min-records", "100"]).unwrap();
        let text = enough(&labelled(5, 1), &with_outcomes)
            .unwrap_err()
            .to_string();
        assert!(!text.contains("pass --from-outcomes"), "{text}");

        let churners = enough(&labelled(200, 9), &args).unwrap_err();
        assert!(
            matches!(
                churners,
                TooFew::Class {
                    class: "churners",
                    got: 9,
                    ..
                }
            ),
            "{churners:?}"
        );
        let stayers = enough(&labelled(200, 191), &args).unwrap_err();
        assert!(
            matches!(
                stayers,
                TooFew::Class {
                    class: "stayers",
                    got: 9,
                    ..
                }
            ),
            "{stayers:?}"
        );
        assert!(stayers.to_string().contains("--min-per-class"));
        // Nothing at all.
        assert!(enough(&labelled(0, 0), &args).is_err());
    }
}

#[cfg(test)]
mod seat_tests {
    use super::*;
    use model::lifecycle::{EventKind, ModelEvent};

    fn event(kind: EventKind, at_ms: i64, champion: &str, challenger: &str) -> ModelEvent {
        ModelEvent {
            kind,
            at: chrono::DateTime::from_timestamp_millis(at_ms)
                .unwrap()
                .to_rfc3339(),
            champion_before: None,
            champion_after: Some(champion.into()),
            challenger_before: None,
            challenger_after: Some(challenger.into()),
            duel_began_ms: None,
            evidence: None,
            by: "t".into(),
        }
    }

    #[test]
    fn a_round_waits_while_a_young_duel_or_a_rollback_watch_holds_the_seat() {
        let hour = 3_600_000;
        let now = 1_800_000_000_000;
        let day = Duration::from_secs(86_400);
        let mut view = LifecycleView {
            champion: Some("m-a".into()),
            challenger: None,
            ..Default::default()
        };
        assert_eq!(seat_taken(&view, day, now), None, "an empty seat is free");
        view.challenger = Some("m-b".into());
        view.record(
            event(EventKind::ChampionPublished, now - 48 * hour, "m-a", "m-b"),
            now,
        )
        .unwrap();
        view.record(
            event(EventKind::ChallengerPublished, now - 2 * hour, "m-a", "m-b"),
            now,
        )
        .unwrap();
        let why = seat_taken(&view, day, now).expect("a two-hour-old duel holds the seat");
        assert!(
            why.contains("m-b is in its duel") && why.contains("--replace-after 1day"),
            "{why}"
        );
        assert_eq!(
            seat_taken(&view, Duration::from_secs(3600), now),
            None,
            "a duel past --replace-after gives the seat up"
        );
        // After a promotion, the replaced model is watched for a rollback: the seat is taken.
        view.champion = Some("m-b".into());
        view.challenger = Some("m-a".into());
        view.record(event(EventKind::Promoted, now - hour, "m-b", "m-a"), now)
            .unwrap();
        let why = seat_taken(&view, day, now).expect("the rollback watch holds the seat");
        assert!(why.contains("watched for a rollback"), "{why}");
        // The same model in both seats (a moment of a promotion) is no duel.
        view.challenger = Some("m-b".into());
        assert_eq!(seat_taken(&view, day, now), None);
    }
}
