//! The cost of shadow scoring: the pipeline without and with a challenger, side by side in one
//! run. Each repeat fills one input topic, then scores it twice, each time with a fresh consumer
//! group and its own predictions topic: once with the champion alone, once with a challenger
//! scored in the shadow (`Lineup::shadow`, into `Prediction::challenger`). The order alternates
//! between repeats, so a machine that slows down (or warms up) during a repeat favours neither.
//! Goal: the challenger costs at most 10% of pipeline throughput.

use std::sync::Arc;

use anyhow::Result;
use server::kafka::{Kafka, Topics};

use crate::throughput::{drop_topics, produce_all, score_all};
use crate::{line, records, row, summary, topics, Args};

pub async fn shadow_cost(
    kafka: &Kafka,
    args: &Args,
    champion: Arc<model::ChurnModel>,
    challenger: Arc<model::ChurnModel>,
) -> Result<()> {
    let data = records(args.records);
    let alone = model::Lineup::from(champion.clone());
    let shadowed = model::Lineup {
        champion,
        challenger: Some(challenger),
    };
    assert!(shadowed.shadow().is_some(), "two different models");
    let (mut plain, mut with, mut costs) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.warmup + args.repeat {
        let base = topics(&format!("shadow-{run}"));
        let variant = |name: &str| Kafka {
            topics: Topics {
                predictions: format!("{}-{name}", base.predictions),
                ..base.clone()
            },
            ..kafka.clone()
        };
        let (kafka_alone, kafka_shadow) = (variant("alone"), variant("shadow"));
        kafka_alone.ensure_pipeline_topics().await?;
        kafka_shadow.ensure_pipeline_topics().await?;
        produce_all(&kafka_alone, &base.input, &data).await?;
        let alone_run = || {
            let group = format!("bench-alone-{run}");
            let lineup = alone.clone();
            let kafka = kafka_alone.clone();
            async move { score_all(&kafka, &group, lineup, args.records, run).await }
        };
        let shadow_run = || {
            let group = format!("bench-shadow-{run}");
            let lineup = shadowed.clone();
            let kafka = kafka_shadow.clone();
            async move { score_all(&kafka, &group, lineup, args.records, run).await }
        };
        let (a, s) = if run % 2 == 0 {
            let a = alone_run().await?;
            (a, shadow_run().await?)
        } else {
            let s = shadow_run().await?;
            (alone_run().await?, s)
        };
        let cost = 1.0 - s / a;
        let counted = if run < args.warmup {
            "warm-up, not counted"
        } else {
            "counted"
        };
        eprintln!(
            "run {run}: champion alone {a:.0}/s, with a challenger {s:.0}/s, cost {:.1}% ({counted})",
            cost * 100.0
        );
        if run >= args.warmup {
            plain.push(a);
            with.push(s);
            costs.push(cost);
        }
        drop_topics(&kafka_alone).await;
        drop_topics(&kafka_shadow).await;
    }
    row("pipeline, champion alone", "records/s", plain);
    row(
        "pipeline, champion + challenger in the shadow",
        "records/s",
        with,
    );
    // Per repeat, as the pipeline ratio: runs moments apart compared with each other.
    let (median, min, max) = summary(costs.iter().map(|c| c * 100.0).collect());
    line(
        "shadow scoring cost, per repeat (≤ 10%)",
        format!("{median:.1}"),
        &format!("{min:>10.1} – {max:<10.1}"),
        "%",
    );
    Ok(())
}
