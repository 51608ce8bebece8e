//! The body of each `churn` command, one module per command; main.rs holds the command line and
//! dispatches here. A command's flags live next to its body.

pub mod analyze;
pub mod broker;
pub mod config;
pub mod generate;
pub mod groups;
pub mod logging;
pub mod model_info;
pub mod publish;
pub mod referee;
pub mod replay;
pub mod retrain;
pub mod score;
pub mod score_file;
pub mod serve;
pub mod signing;
pub mod simulate;
pub mod table;
pub mod tail;
pub mod topics;
pub mod train;
pub mod users;
pub mod web_security;

use std::time::Duration;

use anyhow::Result;
use server::kafka::{Kafka, KafkaArgs, DEFAULT_EMBEDDED_PORT};
use server::model_store;
use server::shutdown::during_start_up;
use server::supervisor::Supervisor;

/// The cluster named by --brokers, or the local embedded broker; checked and with its topics.
pub async fn connect(args: &KafkaArgs) -> Result<Kafka> {
    let kafka = reach(args).await?;
    kafka.ensure_pipeline_topics().await?;
    server::kafka::inspect::warn_on_retention_differences(&kafka).await;
    Ok(kafka)
}

/// The cluster named by --brokers, or the local embedded broker, checked but left as it is (no
/// topics created): for the commands that only look inside.
pub async fn reach(args: &KafkaArgs) -> Result<Kafka> {
    let brokers = args
        .brokers
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_EMBEDDED_PORT}"));
    let kafka = Kafka::new(brokers, args)?;
    kafka.check_reachable(Duration::from_secs(10)).await?;
    Ok(kafka)
}

/// The models in use, as a supervised task keeps them: the champion from the file at `path` (if
/// any) until a newer one is published on the models topic, and the published challenger; all
/// only as `trust` accepts them.
pub async fn follow_models(
    kafka: &Kafka,
    path: &std::path::Path,
    trust: model_store::ModelTrust,
    tasks: &mut Supervisor,
) -> Result<model_store::Followed> {
    let fallback = model_store::load_optional(path, &trust)?;
    let (followed, follower) =
        model_store::follow(kafka, fallback, trust, tasks.shutdown()).await?;
    tasks.spawn("model follower", follower);
    Ok(followed)
}

/// The start of a long-running pipeline command (`score`, `analyze`): the stop token first,
/// then the cluster and the models in use, each phase ending at the stop; the supervisor the
/// command's tasks run under.
pub async fn start_with_models(
    kafka_args: &KafkaArgs,
    model: &std::path::Path,
    signing: &signing::VerifyArgs,
) -> Result<(Kafka, model_store::Followed, Supervisor)> {
    let stop = server::shutdown::on_signals();
    let trust = signing.trust()?;
    let kafka = during_start_up(&stop, connect(kafka_args)).await?;
    let mut tasks = Supervisor::new(stop.clone());
    let models = during_start_up(&stop, follow_models(&kafka, model, trust, &mut tasks)).await?;
    Ok((kafka, models, tasks))
}

/// Reports the first 20 rows a command skipped, on stderr, and how many more there were.
pub fn report_skipped(bad: &[impl std::fmt::Display]) {
    for e in bad.iter().take(20) {
        eprintln!("skipped {e}");
    }
    if bad.len() > 20 {
        eprintln!("... and {} more bad rows", bad.len() - 20);
    }
}

/// Writes `text` to stdout; a reader that has gone (`churn topics | head`) is not an error.
/// (`print!` would panic on the broken pipe.)
pub fn print_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Whether to draw progress bars: only for a person watching stderr.
pub fn stderr_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}
