//! The lifecycle cards' insides, rendered on the server only (see the parent module): the
//! live duel of champion and challenger (figures with their intervals, the sequential test
//! against 0, the verdict in words) and the history of publications, promotions and rollbacks
//! with their evidence. The words are plain functions, tested here; the views only lay them out.

use leptos::prelude::*;
use model::duel::metrics::Estimate;
use model::duel::{Evidence, Metric, ModelQuality, Verdict};
use model::lifecycle::{DuelStatus, LifecycleView, ModelEvent};

use crate::pushed::render_html;

/// A figure with its interval: `0.8731 (0.8612–0.8850)`.
fn with_interval(estimate: Option<Estimate>) -> String {
    match estimate {
        Some(e) => format!("{:.4} ({:.4} – {:.4})", e.value, e.low, e.high),
        None => "—".to_owned(),
    }
}

/// A gain with its sign: `+0.0123 (+0.0021 – +0.0225)`.
fn gain(estimate: Option<Estimate>) -> String {
    match estimate {
        Some(e) => format!("{:+.4} ({:+.4} – {:+.4})", e.value, e.low, e.high),
        None => "—".to_owned(),
    }
}

/// The duel's verdict, in words a person acts on.
pub fn verdict_words(duel: &DuelStatus) -> String {
    let evidence = &duel.decision.evidence;
    let by_hand = !duel.auto_promote;
    match (duel.decision.verdict, duel.after_promotion) {
        (Verdict::Undecided, _) if evidence.records < evidence.min_records => format!(
            "No verdict yet: {} of at least {} labelled records (with {} churners and {} stayers at least).",
            evidence.records, evidence.min_records, evidence.min_per_class, evidence.min_per_class
        ),
        (Verdict::Undecided, _)
            if evidence.churners < evidence.min_per_class
                || evidence.records - evidence.churners.min(evidence.records) < evidence.min_per_class =>
        {
            format!(
                "No verdict yet: {} churners and {} stayers among {} labelled records (at least {} of each).",
                evidence.churners,
                evidence.records - evidence.churners.min(evidence.records),
                evidence.records,
                evidence.min_per_class
            )
        }
        (Verdict::Undecided, _) => format!(
            "Undecided after {} labelled records: the interval still includes 0, so neither model is better with confidence yet.",
            evidence.records
        ),
        (Verdict::ChallengerBetter, false) if by_hand => "The challenger is better. Auto-promote is off: promote it by publishing it as champion.".to_owned(),
        (Verdict::ChallengerBetter, false) => "The challenger is better: it is being promoted to champion.".to_owned(),
        (Verdict::ChallengerBetter, true) if by_hand => "The promoted model is worse than the one it replaced. Auto-promote is off: roll back by publishing the previous champion.".to_owned(),
        (Verdict::ChallengerBetter, true) => "The promoted model is worse than the one it replaced: the promotion is being rolled back.".to_owned(),
        (Verdict::ChampionBetter, false) if by_hand => "The champion is better. Auto-promote is off: withdraw the challenger.".to_owned(),
        (Verdict::ChampionBetter, false) => "The champion is better: the challenger is being withdrawn.".to_owned(),
        (Verdict::ChampionBetter, true) => "The promoted model is better than the one it replaced: the promotion stands.".to_owned(),
    }
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::BrierReduction => "Brier reduction",
    }
}

/// A decision's evidence in one line: records, metric and estimate, interval, test, alpha.
pub fn evidence_words(evidence: &Evidence) -> String {
    let interval = evidence
        .interval
        .map(|(low, high)| format!(", interval {low:+.4} to {high:+.4}"))
        .unwrap_or_default();
    let estimate = evidence
        .estimate
        .map(|e| format!(" {e:+.4}"))
        .unwrap_or_default();
    format!(
        "{} records ({} churners) · {}{}{} · confidence sequence · alpha {}",
        evidence.records,
        evidence.churners,
        metric_name(evidence.metric),
        estimate,
        interval,
        evidence.alpha
    )
}

/// One model's figure, out of its quality.
type Figure = fn(&ModelQuality) -> Option<Estimate>;

// Both cards' insides for `lifecycle` (`None`: nothing has arrived from the models topic yet),
// as HTML. Text and attributes are escaped as in any server-rendered page, so a model version
// or a user name cannot inject markup.

/// The duel card's inside.
pub fn duel(lifecycle: Option<&LifecycleView>) -> String {
    render_html(|| duel_view(lifecycle))
}

/// The history card's inside.
pub fn history(lifecycle: Option<&LifecycleView>) -> String {
    render_html(|| history_view(lifecycle))
}

/// The live duel, or why there is none.
fn duel_view(lifecycle: Option<&LifecycleView>) -> AnyView {
    let chip = lifecycle.and_then(|v| v.duel.as_ref()).map(|d| {
        view! {
            <span class="chip" class:off=!d.auto_promote id="auto-promote">
                {if d.auto_promote { "auto-promote on" } else { "auto-promote off" }}
            </span>
        }
    });
    let body = match lifecycle {
        None => view! { <p class="muted">"Connecting to the pipeline…"</p> }.into_any(),
        Some(LifecycleView { challenger: None, .. }) => view! {
            <p class="muted" id="duel-none">"No challenger: an admin can publish one (Models page, or "
                <span class="mono">"churn publish --challenger model.json"</span>
                ") and every scorer scores it in the shadow; users only ever see the champion's predictions."</p>
        }.into_any(),
        Some(LifecycleView { duel: None, champion, challenger, .. }) => view! {
            <Lineup champion=champion.clone() challenger=challenger.clone()/>
            <p class="muted" id="duel-waiting">"Scored in the shadow; waiting for labelled outcomes to compare the two."</p>
        }.into_any(),
        Some(LifecycleView { duel: Some(duel), .. }) => view! { <DuelFigures duel=duel.clone()/> }.into_any(),
    };
    view! {
        <div class="card-head">
            <h2 id="duel-title">"Champion vs challenger"</h2>
            {chip}
        </div>
        {body}
    }
    .into_any()
}

#[component]
fn Lineup(champion: Option<String>, challenger: Option<String>) -> impl IntoView {
    view! {
        <dl class="status lineup">
            <dt>"Champion"</dt><dd class="mono" id="lineup-champion">{champion.unwrap_or_else(|| "—".into())}</dd>
            <dt>"Challenger"</dt><dd class="mono" id="lineup-challenger">{challenger.unwrap_or_else(|| "none".into())}</dd>
        </dl>
    }
}

#[component]
fn DuelFigures(duel: DuelStatus) -> impl IntoView {
    let words = verdict_words(&duel);
    let verdict = duel.decision.verdict;
    let evidence = duel.decision.evidence;
    let (champion_name, challenger_name) = if duel.after_promotion {
        ("Promoted (champion)", "Replaced (challenger)")
    } else {
        ("Champion", "Challenger")
    };
    let table = duel.report.map(|r| {
        let rows: [(&str, Figure, Option<Estimate>); 4] = [
            ("ROC-AUC", |q| q.auc, r.gains.auc),
            ("Log loss", |q| Some(q.log_loss), Some(r.gains.log_loss)),
            ("Brier score", |q| Some(q.brier), Some(r.gains.brier)),
            ("Calibration error", |q| Some(q.calibration_error), None),
        ];
        view! {
            <p class="small muted">
                <span class="num" id="duel-records">{r.records}</span>" labelled records, "
                <span class="num">{r.churners}</span>" churners; intervals at "
                {format!("{:.0}%", r.confidence * 100.0)}" (fixed-sample, for reading: the verdict uses the sequential test below)"
            </p>
            <div class="feed-wrap">
            <table class="feed" id="duel-table">
                <thead><tr><th>"Measure"</th><th>{champion_name}</th><th>{challenger_name}</th><th>"Challenger's gain"</th></tr></thead>
                <tbody>
                    {rows.into_iter().map(|(name, of, g)| view! {
                        <tr><td>{name}</td>
                            <td class="num">{with_interval(of(&r.champion))}</td>
                            <td class="num">{with_interval(of(&r.challenger))}</td>
                            <td class="num" class:good=g.is_some_and(|g| g.low > 0.0) class:bad=g.is_some_and(|g| g.high < 0.0)>{gain(g)}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
            </div>
        }
    });
    view! {
        <Lineup champion=Some(duel.champion.clone()) challenger=Some(duel.challenger.clone())/>
        <p class="verdict-words" class:good=verdict == Verdict::ChallengerBetter class:bad=verdict == Verdict::ChampionBetter id="duel-verdict">{words}</p>
        {table}
        <h3>"Sequential test: mean Brier reduction"</h3>
        <IntervalChart evidence=evidence/>
        <p class="small muted">{format!(
            "Positive favours the challenger. The interval holds at every sample size at once (alpha {}), so it may be checked after every window; a verdict needs it to exclude 0. Updated {}.",
            evidence.alpha,
            duel.updated_at.get(..19).unwrap_or(&duel.updated_at).replace('T', " ")
        )}</p>
    }
}

/// Where the sequence's interval lies against 0, drawn as one bar: a person sees at a glance
/// whether it has left 0, and on which side.
#[component]
fn IntervalChart(evidence: Evidence) -> impl IntoView {
    const W: f64 = 600.0;
    const H: f64 = 56.0;
    const PAD: f64 = 16.0;
    let Some((low, high)) = evidence.interval else {
        return view! { <p class="muted small" id="interval-none">"No labelled records yet."</p> }
            .into_any();
    };
    let estimate = evidence.estimate.unwrap_or((low + high) / 2.0);
    // Symmetric around 0, so left and right mean the same thing every time.
    let reach = low.abs().max(high.abs()).max(1e-6) * 1.15;
    let x = |v: f64| PAD + (v.clamp(-reach, reach) + reach) / (2.0 * reach) * (W - 2.0 * PAD);
    let side = if low > 0.0 {
        "good"
    } else if high < 0.0 {
        "bad"
    } else {
        "open"
    };
    view! {
        <svg class="chart interval" id="interval-chart" viewBox=format!("0 0 {W} {H}") role="img"
            aria-label=format!("Confidence sequence for the Brier reduction: {low:+.4} to {high:+.4}, estimate {estimate:+.4}")>
            <line class="axis" x1=PAD y1=28.0 x2=W - PAD y2=28.0/>
            <line class="zero" x1=x(0.0) y1=15.0 x2=x(0.0) y2=44.0/>
            <rect class=format!("span {side}") x=format!("{:.1}", x(low)) y=22.0
                width=format!("{:.1}", (x(high) - x(low)).max(2.0)) height=12.0 rx=3.0/>
            <circle class="estimate" cx=format!("{:.1}", x(estimate)) cy=28.0 r=4.5/>
            <text class="label" x=PAD y=52.0>"← champion better"</text>
            <text class="label" x=x(0.0) y=12.0 text-anchor="middle">"0"</text>
            <text class="label" x=W - PAD y=52.0 text-anchor="end">"challenger better →"</text>
        </svg>
        <p class="small num" id="interval-text">{format!("{low:+.4} to {high:+.4} (estimate {estimate:+.4})")}</p>
    }
    .into_any()
}

/// Who changed the lineup, when, and on what evidence; newest first.
fn history_view(lifecycle: Option<&LifecycleView>) -> AnyView {
    let events = lifecycle.map(|v| v.history.as_slice()).unwrap_or_default();
    let body = if events.is_empty() {
        view! { <p class="muted" id="history-empty">"Nothing published yet on the models topic."</p> }.into_any()
    } else {
        view! {
            <div class="feed-wrap">
                <table class="feed history" id="history">
                    <thead><tr><th>"When (UTC)"</th><th>"What"</th><th>"Champion"</th><th>"Challenger"</th><th>"By"</th><th>"Evidence"</th></tr></thead>
                    <tbody>
                        {events.iter().rev().map(|e| view! { <HistoryRow event=e.clone()/> }).collect_view()}
                    </tbody>
                </table>
            </div>
        }.into_any()
    };
    view! {
        <h2 id="history-title">"Model history"</h2>
        {body}
    }
    .into_any()
}

#[component]
fn HistoryRow(event: ModelEvent) -> impl IntoView {
    let version = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let champion = match (&event.champion_before, &event.champion_after) {
        (Some(before), Some(after)) if before != after => format!("{before} → {after}"),
        (_, after) => version(after),
    };
    view! {
        <tr class:decision=event.kind.is_decision()>
            <td class="num">{event.at.get(..19).unwrap_or(&event.at).replace('T', " ")}</td>
            <td class="what">{event.kind.describe()}</td>
            <td class="mono">{champion}</td>
            <td class="mono">{version(&event.challenger_after)}</td>
            <td>{event.by.clone()}</td>
            <td class="factor" title=event.evidence.map(|e| e.test.describe())>
                {event.evidence.as_ref().map(evidence_words).unwrap_or_else(|| "by hand".into())}</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pushed::Card;
    use model::duel::{Decision, Evidence, SequentialTest};

    fn duel(verdict: Verdict, records: u64, after_promotion: bool, auto: bool) -> DuelStatus {
        DuelStatus {
            champion: "m-a".into(),
            challenger: "m-b".into(),
            after_promotion,
            auto_promote: auto,
            report: None,
            decision: Decision {
                verdict,
                evidence: Evidence {
                    records,
                    churners: records / 6,
                    metric: Metric::BrierReduction,
                    estimate: Some(0.0042),
                    interval: Some((0.0011, 0.0073)),
                    test: SequentialTest::EmpiricalBernsteinConfidenceSequence,
                    alpha: 0.05,
                    min_records: 500,
                    min_per_class: 50,
                },
            },
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn each_verdict_says_what_happens_and_what_to_do() {
        let few = verdict_words(&duel(Verdict::Undecided, 120, false, true));
        assert!(few.contains("120 of at least 500"), "{few}");
        let open = verdict_words(&duel(Verdict::Undecided, 5000, false, true));
        assert!(open.contains("includes 0"), "{open}");
        // Enough records, too few churners: it is the class minimum that holds the verdict.
        let mut rare = duel(Verdict::Undecided, 5000, false, true);
        rare.decision.evidence.churners = 12;
        let rare = verdict_words(&rare);
        assert!(
            rare.contains("12 churners and 4988 stayers") && rare.contains("at least 50 of each"),
            "{rare}"
        );
        let promote = verdict_words(&duel(Verdict::ChallengerBetter, 5000, false, true));
        assert!(promote.contains("being promoted"), "{promote}");
        let by_hand = verdict_words(&duel(Verdict::ChallengerBetter, 5000, false, false));
        assert!(by_hand.contains("Auto-promote is off"), "{by_hand}");
        assert!(by_hand.contains("publishing it as champion"), "{by_hand}");
        let rollback = verdict_words(&duel(Verdict::ChallengerBetter, 5000, true, true));
        assert!(rollback.contains("rolled back"), "{rollback}");
        let reject = verdict_words(&duel(Verdict::ChampionBetter, 5000, false, true));
        assert!(reject.contains("withdrawn"), "{reject}");
        let stands = verdict_words(&duel(Verdict::ChampionBetter, 5000, true, false));
        assert!(stands.contains("stands"), "{stands}");
        // Every verdict in every state reads differently: none is mistaken for another.
        let mut all = Vec::new();
        for verdict in [
            Verdict::Undecided,
            Verdict::ChallengerBetter,
            Verdict::ChampionBetter,
        ] {
            for after in [false, true] {
                for auto in [false, true] {
                    all.push(verdict_words(&duel(verdict, 5000, after, auto)));
                }
            }
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8, "{all:#?}");
    }

    #[test]
    fn evidence_names_records_metric_interval_test_and_alpha() {
        let words = evidence_words(
            &duel(Verdict::ChallengerBetter, 1234, false, true)
                .decision
                .evidence,
        );
        assert_eq!(
            words,
            "1234 records (205 churners) · Brier reduction +0.0042, interval +0.0011 to +0.0073 · confidence sequence · alpha 0.05"
        );
        let mut empty = duel(Verdict::Undecided, 0, false, true).decision.evidence;
        empty.estimate = None;
        empty.interval = None;
        assert_eq!(
            evidence_words(&empty),
            "0 records (0 churners) · Brier reduction · confidence sequence · alpha 0.05"
        );
    }

    #[test]
    fn figures_read_with_their_intervals_and_a_missing_one_as_a_dash() {
        let e = Estimate {
            value: 0.87312,
            low: 0.861,
            high: 0.885,
        };
        assert_eq!(with_interval(Some(e)), "0.8731 (0.8610 – 0.8850)");
        assert_eq!(gain(Some(e)), "+0.8731 (+0.8610 – +0.8850)");
        assert_eq!(with_interval(None), "—");
        assert_eq!(gain(None), "—");
    }

    /// A card's inside without the hydration markers (`<!>`) between texts.
    fn shown(card: Card, lifecycle: Option<&LifecycleView>) -> String {
        match card {
            Card::Duel => super::duel(lifecycle),
            Card::History => history(lifecycle),
            other => unreachable!("{other:?} is no lifecycle card"),
        }
        .replace("<!>", "")
    }

    fn estimate(value: f64) -> Estimate {
        Estimate {
            value,
            low: value - 0.01,
            high: value + 0.01,
        }
    }

    fn quality(auc: f64) -> ModelQuality {
        ModelQuality {
            auc: Some(estimate(auc)),
            log_loss: estimate(0.41),
            brier: estimate(0.13),
            calibration_error: estimate(0.02),
        }
    }

    /// A decided duel with its figures, as the referee publishes it.
    fn reported(verdict: Verdict, auto: bool) -> DuelStatus {
        let mut status = duel(verdict, 4210, false, auto);
        status.report = Some(model::duel::DuelReport {
            records: 4210,
            churners: 702,
            auc_records: 4210,
            confidence: 0.95,
            champion: quality(0.85),
            challenger: quality(0.87),
            gains: model::duel::Gains {
                auc: Some(estimate(0.02)),
                log_loss: estimate(0.015),
                brier: Estimate {
                    value: -0.004,
                    low: -0.009,
                    high: -0.001,
                },
            },
            decision: status.decision,
        });
        status
    }

    fn lineup(challenger: Option<&str>, duel: Option<DuelStatus>) -> LifecycleView {
        LifecycleView {
            champion: Some("m-a".into()),
            challenger: challenger.map(Into::into),
            duel,
            history: Vec::new(),
        }
    }

    #[test]
    fn the_duel_card_says_which_state_it_is_in() {
        let connecting = shown(Card::Duel, None);
        assert!(
            connecting.contains("Connecting to the pipeline"),
            "{connecting}"
        );
        assert!(connecting.contains(r#"id="duel-title""#), "{connecting}");
        assert!(!connecting.contains("auto-promote"), "{connecting}");

        let none = shown(Card::Duel, Some(&lineup(None, None)));
        assert!(none.contains(r#"id="duel-none""#), "{none}");
        assert!(!none.contains("lineup-challenger"), "{none}");

        let waiting = shown(Card::Duel, Some(&lineup(Some("m-b"), None)));
        assert!(waiting.contains(r#"id="duel-waiting""#), "{waiting}");
        assert!(
            waiting.contains(r#"id="lineup-challenger" class="mono">m-b<"#)
                && waiting.contains(r#"id="lineup-champion" class="mono">m-a<"#),
            "{waiting}"
        );
    }

    #[test]
    fn a_decided_duel_shows_its_table_its_interval_and_the_switch() {
        let off = shown(
            Card::Duel,
            Some(&lineup(
                Some("m-b"),
                Some(reported(Verdict::ChallengerBetter, false)),
            )),
        );
        for part in [
            r#"id="duel-table""#,
            r#"id="duel-records" class="num">4210<"#,
            r#"id="auto-promote" class="chip off">auto-promote off<"#,
            "Auto-promote is off",
            r#"class="span good""#,
            "+0.0011 to +0.0073 (estimate +0.0042)",
            "0.8500 (0.8400 – 0.8600)",
            "intervals at 95%",
        ] {
            assert!(off.contains(part), "{part} missing in {off}");
        }
        // The Brier gain's interval lies below 0: it reads as bad, the others as good.
        assert!(
            off.contains(r#"class="num  bad">-0.0040 (-0.0090 – -0.0010)<"#),
            "{off}"
        );
        assert!(off.contains(r#"class="num good">+0.0200"#), "{off}");

        let on = shown(
            Card::Duel,
            Some(&lineup(
                Some("m-b"),
                Some(reported(Verdict::ChampionBetter, true)),
            )),
        );
        assert!(
            on.contains(r#"id="auto-promote" class="chip">auto-promote on<"#),
            "{on}"
        );
        assert!(on.contains("being withdrawn"), "{on}");
    }

    #[test]
    fn an_interval_across_zero_is_open_and_none_is_said_so() {
        let mut open = duel(Verdict::Undecided, 5000, false, true);
        open.decision.evidence.interval = Some((-0.002, 0.003));
        let html = shown(Card::Duel, Some(&lineup(Some("m-b"), Some(open.clone()))));
        assert!(html.contains(r#"class="span open""#), "{html}");
        open.decision.evidence.interval = None;
        let html = shown(Card::Duel, Some(&lineup(Some("m-b"), Some(open))));
        assert!(html.contains(r#"id="interval-none""#), "{html}");
        assert!(!html.contains("interval-chart"), "{html}");
    }

    #[test]
    fn the_history_is_newest_first_and_empty_says_so() {
        let empty = shown(Card::History, None);
        assert!(empty.contains(r#"id="history-empty""#), "{empty}");
        assert_eq!(empty, shown(Card::History, Some(&LifecycleView::default())));

        let event = |kind, at: &str, by: &str| ModelEvent {
            kind,
            at: at.into(),
            champion_before: Some("m-a".into()),
            champion_after: Some("m-a".into()),
            challenger_before: None,
            challenger_after: Some("m-b".into()),
            duel_began_ms: None,
            evidence: None,
            by: by.into(),
        };
        let mut promoted = event(
            model::lifecycle::EventKind::Promoted,
            "2026-01-02T03:04:05.678Z",
            "auto-promote",
        );
        promoted.champion_after = Some("m-b".into());
        promoted.challenger_after = Some("m-a".into());
        promoted.evidence = Some(
            duel(Verdict::ChallengerBetter, 1234, false, true)
                .decision
                .evidence,
        );
        let mut view = lineup(Some("m-a"), None);
        view.history = vec![
            event(
                model::lifecycle::EventKind::ChallengerPublished,
                "2026-01-01T00:00:00Z",
                "ann",
            ),
            promoted,
        ];
        let html = shown(Card::History, Some(&view));
        let newest = html.find("challenger promoted").expect("the promotion");
        let oldest = html.find("challenger published").expect("the publication");
        assert!(newest < oldest, "newest first: {html}");
        assert!(html.contains("2026-01-02 03:04:05<"), "{html}");
        assert!(html.contains("m-a → m-b"), "{html}");
        assert!(html.contains(r#"<tr class="decision">"#), "{html}");
        assert!(html.contains("1234 records (205 churners)"), "{html}");
        assert!(html.contains(">by hand<"), "{html}");
    }

    /// Model versions come from model files and names from accounts: whatever they hold, the
    /// cards show it as text, never as markup.
    #[test]
    fn hostile_versions_and_names_stay_text() {
        let hostile = r#"<img src=x onerror="alert(1)">"#;
        let mut status = reported(Verdict::ChallengerBetter, false);
        status.champion = hostile.into();
        status.challenger = "</td><script>alert(2)</script>".into();
        status.updated_at = hostile.into();
        let mut view = lineup(Some(hostile), Some(status));
        view.champion = Some(hostile.into());
        view.history = vec![ModelEvent {
            kind: model::lifecycle::EventKind::ChampionPublished,
            at: hostile.into(),
            champion_before: Some("</table><p>".into()),
            champion_after: Some(hostile.into()),
            challenger_before: None,
            challenger_after: Some("<b>".into()),
            duel_began_ms: None,
            evidence: None,
            by: "<script>alert(3)</script>".into(),
        }];
        for card in [Card::Duel, Card::History] {
            let html = shown(card, Some(&view));
            for markup in ["<img", "<script", "</td><script", "</table><p>", "<b>"] {
                assert!(!html.contains(markup), "{markup} in {html}");
            }
            assert!(html.contains("&lt;"), "shown as text: {html}");
        }
        // Without a duel, the lineup shows the names too.
        view.duel = None;
        let html = shown(Card::Duel, Some(&view));
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img"), "{html}");
    }
}
