//! The Pipeline card: brokers and topics (admins only), what the broker holds, the model and
//! the counters, pushed over the live connection (no polling).
//!
//! A pushed card (`pushed`): the server renders its inside (`render`) once for admins and once
//! for everyone else; hydrated, its views and decoders cost the bundle 8 KiB gzipped.

use leptos::prelude::*;

#[cfg(feature = "ssr")]
use crate::access::Role;
#[cfg(feature = "ssr")]
use crate::api::{PipelineStatus, StorageStatus};
use crate::live::LiveState;
use crate::pushed::{markup, Card};
#[cfg(feature = "ssr")]
use crate::pushed::{render_html, PushedCard};

#[component]
pub fn StatusCard() -> impl IntoView {
    let live = expect_context::<LiveState>();
    view! {
        <section class="card status-card" aria-labelledby="status-title"
            inner_html=markup(live, Card::Status)></section>
    }
}

/// The card for `status`, rendered once for each view of it: admins', and everyone else's.
#[cfg(feature = "ssr")]
pub fn cards(status: &PipelineStatus) -> [PushedCard; 2] {
    [Role::Viewer..=Role::Analyst, Role::Admin..=Role::Admin].map(|roles| card(status, roles))
}

/// The card for `status` as `roles` see it (all of them admins, or none: brokers, topics and
/// storage are for admins only).
#[cfg(feature = "ssr")]
pub fn card(status: &PipelineStatus, roles: std::ops::RangeInclusive<Role>) -> PushedCard {
    let admin = *roles.start() >= Role::Admin;
    debug_assert!(admin || *roles.end() < Role::Admin, "one view per range");
    PushedCard::new(Card::Status, roles, render(Some(status), admin))
}

/// The card's inside for `status` (`None`: not received yet), as HTML; with brokers, topics and
/// storage when `admin` (others are sent none of them). Text is escaped as in any
/// server-rendered page.
#[cfg(feature = "ssr")]
pub fn render(status: Option<&PipelineStatus>, admin: bool) -> String {
    render_html(|| {
        let body = match status.cloned() {
            Some(s) => view! {
                <dl class="status">
                    {admin.then(|| view! {
                        <dt>"Brokers"</dt><dd class="mono">{s.brokers.clone()}</dd>
                        <dt>"Topics"</dt><dd class="mono">{s.input_topic.clone()}" → "{s.predictions_topic.clone()}</dd>
                        {s.storage.clone().map(|storage| view! {
                            {storage.data_dir_bytes.map(|bytes| view! {
                                <dt>"Broker disk"</dt><dd class="num broker-disk">{StorageStatus::human_bytes(bytes)}</dd>
                            })}
                            <dt>"Records held"</dt>
                            <dd class="topic-records">
                                <ul>
                                    {storage.topic_records.into_iter().map(|(topic, records)| view! {
                                        <li><span class="mono">{topic}</span>" "<span class="num">{records}</span></li>
                                    }).collect_view()}
                                </ul>
                            </dd>
                        })}
                    })}
                    <dt>"Model"</dt><dd class="mono model-version">{s.model_version}</dd>
                    <dt>"Scored"</dt><dd class="scored num">{s.scored}</dd>
                    <dt>"Dead-lettered"</dt><dd class="num">{s.dead_lettered}</dd>
                </dl>
            }.into_any(),
            None => view! { <p class="muted">"Connecting to the pipeline…"</p> }.into_any(),
        };
        view! {
            <h2 id="status-title">"Pipeline"</h2>
            {body}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{cards, render};
    use crate::access::Role;
    use crate::api::{PipelineStatus, StorageStatus};

    fn status() -> PipelineStatus {
        PipelineStatus {
            brokers: "kafka1:9093".into(),
            input_topic: "in".into(),
            predictions_topic: "out".into(),
            model_version: "<b>m-1</b>".into(),
            scored: 7,
            storage: Some(StorageStatus {
                data_dir_bytes: Some(123_456_789),
                topic_records: vec![("<script>x</script>".into(), 5)],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_card_connects_then_shows_counters_and_the_broker_only_to_an_admin() {
        let connecting = render(None, true);
        assert!(
            connecting.contains("Connecting to the pipeline"),
            "{connecting}"
        );
        assert!(connecting.contains(r#"id="status-title""#), "{connecting}");

        let admin = render(Some(&status()), true).replace("<!>", "");
        for part in [
            "kafka1:9093",
            "in → out",
            r#"class="num broker-disk">123.5 MB<"#,
            r#"class="scored num">7<"#,
        ] {
            assert!(admin.contains(part), "{part} missing in {admin}");
        }
        // Versions and topic names are text, never markup.
        assert!(
            !admin.contains("<b>") && !admin.contains("<script"),
            "{admin}"
        );
        assert!(admin.contains("&lt;script&gt;x"), "{admin}");

        // Even given them, the card shows no broker, topic or storage to anyone else.
        let other = render(Some(&status()), false);
        for hidden in ["kafka1", "Topics", "Broker disk", "Records held", "script"] {
            assert!(!other.contains(hidden), "{hidden} in {other}");
        }
        assert!(other.contains("Dead-lettered"), "{other}");
    }

    #[test]
    fn each_role_falls_in_exactly_one_view_and_only_admins_in_the_broker_one() {
        let cards = cards(&status());
        for role in [Role::Viewer, Role::Analyst, Role::Admin] {
            let seen: Vec<_> = cards.iter().filter(|c| c.roles.contains(&role)).collect();
            assert_eq!(seen.len(), 1, "{role}");
            assert_eq!(
                seen[0].markup.contains("kafka1"),
                role == Role::Admin,
                "{role}"
            );
        }
    }
}
