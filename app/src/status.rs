//! The Pipeline card: brokers and topics (admins only), what the broker holds, the model and
//! the counters, pushed over the live connection (no polling).
//!
//! The server renders the card's inside for each user's role (`inside`) and pushes the markup;
//! the browser swaps it in, so it carries neither the status' decoders nor these views
//! (hydrated, they cost it 8 KiB gzipped).

use leptos::prelude::*;

#[cfg(feature = "ssr")]
use crate::api::{PipelineStatus, StorageStatus};
use crate::live::LiveState;

#[component]
pub fn StatusCard() -> impl IntoView {
    let live = expect_context::<LiveState>();
    view! {
        <section class="card status-card" aria-labelledby="status-title"
            inner_html=move || live.status.get().unwrap_or_else(before_the_feed)></section>
    }
}

/// Only the server renders the card before the feed: hydration keeps the server's markup (it
/// does not rewrite inner HTML), and the browser only ever replaces it with the feed's.
fn before_the_feed() -> String {
    #[cfg(feature = "ssr")]
    return inside(None, false);
    #[cfg(not(feature = "ssr"))]
    {
        String::new()
    }
}

/// The card's inside for `status` (`None`: not received yet), as HTML; with brokers, topics and
/// storage when `admin` (the server sends others none of them). Text is escaped as in any
/// server-rendered page.
#[cfg(feature = "ssr")]
pub fn inside(status: Option<&PipelineStatus>, admin: bool) -> String {
    // Views are created under an owner, as on a page; nothing here is reactive.
    Owner::new().with(|| {
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
        .to_html()
    })
}

#[cfg(test)]
mod tests {
    use super::inside;
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
        let connecting = inside(None, true);
        assert!(
            connecting.contains("Connecting to the pipeline"),
            "{connecting}"
        );
        assert!(connecting.contains(r#"id="status-title""#), "{connecting}");

        let admin = inside(Some(&status()), true).replace("<!>", "");
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
        let other = inside(Some(&status()), false);
        for hidden in ["kafka1", "Topics", "Broker disk", "Records held", "script"] {
            assert!(!other.contains(hidden), "{hidden} in {other}");
        }
        assert!(other.contains("Dead-lettered"), "{other}");
    }
}
