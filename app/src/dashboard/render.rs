//! The dashboard's cards, rendered on the server only (see the parent module): key figures,
//! windows, segments, live model quality and lag (the body), and the riskiest customers.

use leptos::prelude::*;
use model::analytics::{SegmentSummary, MIN_DRIFT_SAMPLE, PSI_DRIFT_THRESHOLD};
use model::format::percent;
use model::Prediction;

use crate::access::Role;
use crate::api::{Dashboard, WindowPoint};
use crate::chart::{Column, RateChart};
use crate::live::time_of;
use crate::pushed::{render_html, Card, PushedCard};

/// Both cards for `dashboard`, rendered once: the body for every role, the riskiest customers
/// for those who may see customer names.
pub fn cards(dashboard: &Dashboard) -> [PushedCard; 2] {
    [
        PushedCard::new(
            Card::Dashboard,
            Role::Viewer..=Role::Admin,
            body(Some(dashboard)),
        ),
        PushedCard::new(
            Card::Riskiest,
            Role::Analyst..=Role::Admin,
            riskiest(Some(&dashboard.riskiest)),
        ),
    ]
}

/// The dashboard's body for `dashboard` (`None`: no window has arrived yet), as HTML. Text and
/// attributes are escaped as in any server-rendered page.
pub fn body(dashboard: Option<&Dashboard>) -> String {
    render_html(|| {
        match dashboard {
        None => view! { <section class="card"><p class="muted" id="dash-waiting">"Waiting for the first windows…"</p></section> }
            .into_any(),
        Some(d) => view! { <DashboardBody d=d.clone()/> }.into_any(),
    }
    })
}

/// The riskiest customers' table, riskiest first (`None`: no window has arrived yet), as HTML:
/// the inside of the card's scroll container.
pub fn riskiest(riskiest: Option<&[Prediction]>) -> String {
    render_html(|| {
        match riskiest {
        None => view! { <p class="muted">"Waiting for the first windows…"</p> }.into_any(),
        Some(riskiest) => view! {
            <table class="feed" id="riskiest">
                <thead><tr><th>"Time"</th><th>"Customer"</th><th>"Churn risk"</th><th>"Why"</th></tr></thead>
                <tbody>
                    {riskiest.iter().map(|p| view! {
                        <tr class="risk">
                            <td class="num">{time_of(&p.scored_at)}</td>
                            <td>{p.name.clone()}</td>
                            <td class="num">{percent(p.churn_probability, 0)}</td>
                            <td class="factor">{model::describe_all(&p.top_factors)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }.into_any(),
    }
    })
}

/// What the PSI card says: too few scores to judge, drifting, or stable.
fn drift_words(drift: Option<&model::analytics::DriftSummary>) -> String {
    match drift {
        Some(x) if !x.enough_scores() => format!(
            " PSI: not enough scores yet ({} of {MIN_DRIFT_SAMPLE})",
            x.scored
        ),
        Some(x) if x.drifting => format!(" PSI: drifting (above {PSI_DRIFT_THRESHOLD})"),
        Some(_) => format!(" PSI: stable (alert above {PSI_DRIFT_THRESHOLD})"),
        None => " PSI: no reference yet".to_owned(),
    }
}

#[component]
fn DashboardBody(d: Dashboard) -> impl IntoView {
    let all = d
        .segments
        .iter()
        .find(|(k, _)| k == "all")
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let total_lag: i64 = d.lag.iter().map(|(_, l)| l).sum();
    let window_s = d.window_ms as f64 / 1000.0;
    let last = d.windows.last().cloned().unwrap_or_default();
    let drift = d.drift.clone();
    let extrapolated = d
        .segments
        .iter()
        .find(|(k, _)| k == model::analytics::EXTRAPOLATED)
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let any_extrapolated = extrapolated.count > 0;
    view! {
        <div class="kpi-row">
            <div class="card kpi-card"><span class="kpi" id="dash-count">{all.count}</span>
                {format!(" predictions, last {} min", d.summary_minutes)}</div>
            <div class="card kpi-card"><span class="kpi" id="dash-rate">{percent(all.churn_rate, 0)}</span>" predicted to churn"</div>
            <div class="card kpi-card"><span class="kpi">{format!("{:.1}/s", last.count as f64 / window_s)}</span>" in the last window"</div>
            <div class="card kpi-card" class:alert=drift.as_ref().is_some_and(|x| x.drifting)>
                <span class="kpi" id="dash-drift">{drift.as_ref().map(|x| format!("{:.3}", x.psi)).unwrap_or_else(|| "—".into())}</span>
                {drift_words(drift.as_ref())}
            </div>
            <div class="card kpi-card" class:alert=any_extrapolated>
                <span class="kpi" id="dash-extrapolated">{extrapolated.count}</span>
                " outside the training range"
            </div>
            <div class="card kpi-card"><span class="kpi" id="dash-lag">{total_lag}</span>" records of consumer lag"</div>
        </div>
        <section class="card">
            <h2>{format!("Churn rate and throughput per {window_s:.0} s window")}</h2>
            <WindowChart windows=d.windows.clone() window_s=window_s/>
        </section>
        <div class="dash-grid">
            <section class="card">
                <h2>"Segments"</h2>
                <SegmentBars segments=d.segments.clone()/>
            </section>
            <section class="card">
                <h2>"Live model quality"</h2>
                {if d.quality.is_empty() {
                    view! { <p class="muted">"No outcomes yet: records that carry a Churn label feed these figures."</p> }.into_any()
                } else {
                    view! {
                        <table class="feed" id="quality">
                            <thead><tr><th>"Model"</th><th>"Labelled"</th><th>"ROC-AUC"</th><th>"Accuracy"</th><th>"Precision"</th><th>"Recall"</th></tr></thead>
                            <tbody>
                                {d.quality.iter().map(|(v, q)| view! {
                                    <tr><td class="mono">{v.clone()}</td><td class="num">{q.labelled}</td>
                                        <td class="num">{format!("{:.3}", q.roc_auc)}</td><td class="num">{percent(q.accuracy, 0)}</td>
                                        <td class="num">{percent(q.precision, 0)}</td><td class="num">{percent(q.recall, 0)}</td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
                <h3>"Consumer lag by partition"</h3>
                <p class="num mono">{d.lag.iter().map(|(p, l)| format!("p{p}: {l}")).collect::<Vec<_>>().join("   ")}</p>
            </section>
        </div>
    }
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
fn utc_time_of_day(ms: i64) -> String {
    let seconds = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[component]
fn WindowChart(windows: Vec<WindowPoint>, window_s: f64) -> impl IntoView {
    let columns: Vec<Column> = windows
        .iter()
        .map(|w| Column {
            count: w.count,
            rate: (w.count > 0).then(|| w.churn_predicted as f64 / w.count as f64),
        })
        .collect();
    let start = windows
        .first()
        .map(|w| utc_time_of_day(w.start_ms))
        .unwrap_or_default();
    let slots = columns.len();
    view! {
        <RateChart columns=columns slots=slots id="window-chart"
            aria_label="Predictions per window (bars) and churn rate (line)"
            max_label=Box::new(move |max| format!("{:.1}/s max", max / window_s))
            rate_label="churn rate 0–100%" start_label=start/>
    }
}

#[component]
fn SegmentBars(segments: Vec<(String, SegmentSummary)>) -> impl IntoView {
    // Groups in a fixed order; states by volume, the ten largest.
    const ORDER: [&str; 10] = [
        "account_manager=no",
        "account_manager=yes",
        "tenure=<2y",
        "tenure=2-5y",
        "tenure=5-8y",
        "tenure=8y+",
        "sites=0-6",
        "sites=7-9",
        "sites=10-12",
        "sites=13+",
    ];
    let mut rows: Vec<(String, SegmentSummary)> = ORDER
        .iter()
        .filter_map(|key| segments.iter().find(|(k, _)| k == key).cloned())
        .collect();
    let mut states: Vec<_> = segments
        .iter()
        .filter(|(k, _)| k.starts_with("state="))
        .cloned()
        .collect();
    states.sort_by_key(|(_, s)| std::cmp::Reverse(s.count));
    rows.extend(states.into_iter().take(10));
    view! {
        <div class="segments" id="segments">
            {rows.into_iter().map(|(key, s)| {
                let (group, value) = key.split_once('=').unwrap_or((&key, ""));
                let label = format!("{} {}", group.replace('_', " "), value);
                view! {
                    <div class="seg">
                        <span class="seg-label">{label}</span>
                        <span class="seg-bar"><span style=format!("width:{}", percent(s.churn_rate, 1))></span></span>
                        <span class="num seg-value">{format!("{} of {}", percent(s.churn_rate, 0), s.count)}</span>
                    </div>
                }
            }).collect_view()}
        </div>
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn window_start_reads_as_utc_time_of_day() {
        assert_eq!(super::utc_time_of_day(0), "00:00:00");
        assert_eq!(super::utc_time_of_day(1_764_117_296_789), "00:34:56");
    }

    #[test]
    fn drift_is_not_judged_on_too_few_scores() {
        use model::analytics::{DriftSummary, MIN_DRIFT_SAMPLE};
        let summary = |psi: f64, scored: u64| DriftSummary {
            version: "m-a".into(),
            psi,
            drifting: psi > 0.2 && scored >= MIN_DRIFT_SAMPLE,
            scored,
        };
        let few = super::drift_words(Some(&summary(2.0, 50)));
        assert_eq!(
            few,
            format!(" PSI: not enough scores yet (50 of {MIN_DRIFT_SAMPLE})")
        );
        let many = super::drift_words(Some(&summary(2.0, MIN_DRIFT_SAMPLE)));
        assert!(many.contains("drifting"), "{many}");
        let calm = super::drift_words(Some(&summary(0.01, 500)));
        assert!(calm.contains("stable"), "{calm}");
        assert_eq!(super::drift_words(None), " PSI: no reference yet");
    }

    #[test]
    fn the_cards_wait_then_show_names_only_to_those_who_may_see_them() {
        use crate::access::Role;
        use crate::pushed::Card;

        let waiting = super::body(None);
        assert!(waiting.contains(r#"id="dash-waiting""#), "{waiting}");
        assert!(!super::riskiest(None).contains(r#"id="riskiest""#));

        let customer: model::Prediction = serde_json::from_value(serde_json::json!({
            "id": "c-1", "name": "<script>alert(1)</script>", "churn_probability": 0.9,
            "churn": true, "threshold": 0.5, "model_version": "m-1",
            "scored_at": "2024-01-01T12:34:56.000Z", "top_factors": []
        }))
        .expect("a prediction");
        let dashboard = crate::api::Dashboard {
            window_ms: 10_000,
            riskiest: vec![customer],
            segments: vec![("all".into(), Default::default())],
            ..Default::default()
        };
        let [body, riskiest] = super::cards(&dashboard);
        assert_eq!(
            (body.card, riskiest.card),
            (Card::Dashboard, Card::Riskiest)
        );
        // The body names nobody, so every role gets it; the list only those who may see names.
        assert!(body.roles.contains(&Role::Viewer) && body.roles.contains(&Role::Admin));
        assert!(
            !body.markup.contains("riskiest") && !body.markup.contains("script"),
            "{}",
            body.markup
        );
        assert!(
            body.markup.contains(r#"id="dash-count""#),
            "{}",
            body.markup
        );
        assert!(!riskiest.roles.contains(&Role::Viewer));
        assert!(riskiest.roles.contains(&Role::Analyst) && riskiest.roles.contains(&Role::Admin));
        let list = riskiest.markup.replace("<!>", "");
        assert!(list.contains(r#"id="riskiest""#), "{list}");
        assert!(list.contains("12:34:56"), "{list}");
        // A customer's name is text, never markup.
        assert!(!list.contains("<script"), "{list}");
        assert!(list.contains("&lt;script&gt;"), "{list}");
    }
}
