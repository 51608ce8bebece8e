//! `churn groups`: consumer groups, their state and members, and per partition the committed
//! offset and the lag.

use anyhow::Result;
use server::kafka::inspect::{self, GroupInfo};
use server::kafka::KafkaArgs;

use super::table::{aligned, visible};

/// `churn groups`'s flags.
#[derive(clap::Args)]
pub struct GroupsArgs {
    /// Print JSON (an array of groups with members and offsets) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: &GroupsArgs, kafka_args: &KafkaArgs) -> Result<()> {
    let kafka = super::reach(kafka_args).await?;
    let groups = inspect::list_groups(&kafka).await?;
    for group in groups.iter().filter(|g| g.error.is_some()) {
        eprintln!(
            "warning: group {}: {} (the other groups are listed)",
            visible(&group.name),
            visible(group.error.as_deref().unwrap_or_default())
        );
    }
    if args.json {
        super::print_stdout(&(serde_json::to_string_pretty(&groups)? + "\n"))?;
    } else if groups.is_empty() {
        super::print_stdout(&format!("no consumer groups on {}\n", kafka.brokers))?;
    } else {
        super::print_stdout(&table(&groups))?;
    }
    Ok(())
}

/// `client@host`, or the member id where the broker reports neither (the embedded broker).
fn member_label(m: &server::kafka::inspect::GroupMember) -> String {
    match (m.client_id.as_str(), m.host.trim_start_matches('/')) {
        ("", "") => m.member_id.clone(),
        (client, host) => format!("{client}@{host}"),
    }
}

/// One row per committed partition; a group's name, state and members on its first row only.
fn table(groups: &[GroupInfo]) -> String {
    let mut rows = Vec::new();
    for group in groups {
        let members = match group.members.len() {
            0 => "-".to_owned(),
            _ => group
                .members
                .iter()
                .map(member_label)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let mut first = vec![group.name.clone(), group.state.clone(), members];
        if let Some(error) = &group.error {
            first.push(format!("(offsets unreadable: {error})"));
            first.extend(["", "", "", ""].map(String::from));
            rows.push(first);
            continue;
        }
        if group.offsets.is_empty() {
            first.extend(["-", "-", "-", "-", "-"].map(String::from));
            rows.push(first);
            continue;
        }
        for (i, offset) in group.offsets.iter().enumerate() {
            let mut row = if i == 0 {
                std::mem::take(&mut first)
            } else {
                vec![String::new(); 3]
            };
            row.extend([
                offset.topic.clone(),
                offset.partition.to_string(),
                offset.committed.to_string(),
                offset.end.to_string(),
                offset.lag.to_string(),
            ]);
            rows.push(row);
        }
    }
    aligned(
        &[
            "GROUP",
            "STATE",
            "MEMBERS (client@host or id)",
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "END",
            "LAG",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, error: Option<&str>) -> GroupInfo {
        GroupInfo {
            name: name.into(),
            state: "Stable".into(),
            members: vec![],
            offsets: vec![],
            total_lag: 0,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_group_whose_offsets_cannot_be_read_is_listed_with_the_reason_among_the_others() {
        let text = table(&[
            group("churn-scorer", None),
            group(
                "broken",
                Some("reading the offsets group broken committed: timed out"),
            ),
        ]);
        assert!(text.contains("churn-scorer"), "{text}");
        assert!(
            text.contains(
                "(offsets unreadable: reading the offsets group broken committed: timed out)"
            ),
            "{text}"
        );
        let json = serde_json::to_value([group("a", None), group("b", Some("x"))]).unwrap();
        assert!(json[0].get("error").is_none());
        assert_eq!(json[1]["error"], "x");
    }
}
