//! `churn tail TOPIC`: a topic's records as JSON lines (key, partition, offset, timestamp,
//! headers, value; dead letters with their reason), for people and for `jq`.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use server::kafka::inspect::{self, Ended, Start, TailOptions, MAX_LAST};
use server::kafka::KafkaArgs;

/// `churn tail`'s flags.
#[derive(clap::Args)]
pub struct TailArgs {
    /// The topic to read (any topic, not only the pipeline's).
    pub topic: String,
    /// Every record the topic holds, oldest first (per partition).
    #[arg(long, conflicts_with = "last")]
    pub from_beginning: bool,
    /// The last N records across partitions, by timestamp (with --key: the last N of that key).
    /// The default without --from-beginning is the last 10. At most 100,000, and at most 256 MiB
    /// of records are held until printed: past it the oldest are let go, with a warning.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_LAST as u64))]
    pub last: Option<u64>,
    /// Only records with this key (the record id for the pipeline's topics).
    #[arg(long, value_name = "ID")]
    pub key: Option<String>,
    /// Go on printing new records as they arrive, until Ctrl-C; without it, stop at the end
    /// offsets seen at the start.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

impl TailArgs {
    pub fn options(&self) -> TailOptions {
        TailOptions {
            topic: self.topic.clone(),
            start: match (self.from_beginning, self.last) {
                (true, _) => Start::Beginning,
                (false, n) => Start::Last(n.unwrap_or(10) as usize),
            },
            key: self.key.as_ref().map(|k| k.as_bytes().to_vec()),
            follow: self.follow,
        }
    }
}

pub async fn run(args: &TailArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let kafka = super::reach(kafka_args).await?;
    let stop = server::shutdown::on_signals();
    let stdout = std::io::stdout();
    // Each line at once when someone watches or follows; in blocks into a pipe or file.
    let flush_each = args.follow || stdout.is_terminal();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let ended = inspect::read_records(&kafka, &args.options(), stop, |record| {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
        if flush_each {
            out.flush()?;
        }
        Ok(())
    })
    .await?;
    match out.flush() {
        // `churn tail x | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
        Ok(()) => {
            if ended == Ended::Stopped {
                tracing::debug!("tail stopped");
            }
            Ok(())
        }
    }
}
