//! The churn web app: Leptos components (rendered on the server, hydrated in the browser) and
//! the server functions they call.

#![recursion_limit = "512"]

pub mod access;
pub mod api;
mod chart;
mod dashboard;
mod form;
mod lifecycle;
mod live;
pub mod login;
mod models;
#[cfg(feature = "ssr")]
mod outbox;
mod pushed;
mod status;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use model::format::{percent, percentage_points};
use model::{Field, RawCustomer, Scalar};

#[cfg(feature = "ssr")]
pub use access::FeedSlot;
pub use access::{signed_in_user, CurrentUser, Role};

#[cfg(feature = "ssr")]
pub use api::{
    predict_record, Backend, BackendHandle, Dashboard, FeedEvent, PipelineStatus, StorageStatus,
    WindowPoint,
};
pub use api::{LiveEvent, PredictError, PredictReply, Seat, SecondStats};
use dashboard::DashboardPage;
use form::{ChurnForm, FormState};
#[cfg(feature = "ssr")]
pub use lifecycle::LifecycleCards;
use live::{LivePanel, LiveState};
use login::LoginPage;
use models::ModelsPage;
use status::StatusCard;

/// The bundle's file names under /pkg (churn.js, churn_bg.wasm, churn.css).
pub const OUTPUT_NAME: &str = "churn";

pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The server gives each page a nonce for its Content-Security-Policy; the hydration loader
    // (the page's only inline script) carries it.
    #[cfg(feature = "ssr")]
    if let Some(nonce) = use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<leptos::nonce::Nonce>().cloned())
    {
        provide_context(nonce);
    }
    // The browser reads who is signed in from here (`signed_in_user`), so hydration renders the
    // same header and sections as the server did.
    let user = signed_in_user();
    let (name, role) = match user {
        Some(user) => (Some(user.name), Some(user.role.name())),
        None => (None, None),
    };
    view! {
        <!DOCTYPE html>
        <html lang="en" data-user=name data-role=role>
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app's pages. Each one is a full page load: without a client-side router the browser
/// bundle is about 70 KB (gzipped) smaller, and the live connection reopens in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Home,
    Dashboard,
    Models,
    Login,
    NotFound,
}

impl Page {
    /// Every page the server renders, by path.
    pub const ROUTES: [(&'static str, Page); 4] = [
        ("/", Page::Home),
        ("/dashboard", Page::Dashboard),
        ("/models", Page::Models),
        ("/login", Page::Login),
    ];

    /// The role a page needs (`None`: open to everyone). The server's route policy takes it from
    /// here, and the navigation shows only the pages the user may open.
    pub fn access(self) -> Option<Role> {
        match self {
            Page::Home => Some(Role::Analyst),
            Page::Dashboard | Page::NotFound => Some(Role::Viewer),
            Page::Models => Some(Role::Admin),
            Page::Login => None,
        }
    }

    /// The page's name in the navigation, if it has a place there.
    fn nav_label(self) -> Option<&'static str> {
        match self {
            Page::Home => Some("Score"),
            Page::Dashboard => Some("Dashboard"),
            Page::Models => Some("Models"),
            Page::Login | Page::NotFound => None,
        }
    }

    pub fn at(path: &str) -> Page {
        let path = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        Page::ROUTES
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(Page::NotFound, |&(_, page)| page)
    }

    /// The page being rendered: from the request on the server, from the address bar in the
    /// browser (so hydration sees the same tree).
    fn current() -> Page {
        #[cfg(feature = "ssr")]
        let path = use_context::<http::request::Parts>().map(|parts| parts.uri.path().to_owned());
        #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
        let path = window().location().pathname().ok();
        #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
        let path: Option<String> = None;
        path.map_or(Page::Home, |path| Page::at(&path))
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let live = LiveState::new();
    provide_context(live);
    let page = Page::current();
    let user = signed_in_user();
    // The live feed refuses anyone not signed in: no connection to retry from the sign-in page.
    if user.is_some() && page != Page::Login {
        live.connect();
    }
    view! {
        <Stylesheet id="churn" href=format!("/pkg/{OUTPUT_NAME}.css")/>
        <Title text="Customer churn — live"/>
        <header class="topbar">
            <span class="brand">"Customer churn"</span>
            <span class="tagline">"real-time churn prediction on Kafka"</span>
            {user.map(|user| view! { <SignedIn user=user page=page/> })}
        </header>
        <main>
            {match page {
                Page::Home => view! { <HomePage/> }.into_any(),
                Page::Dashboard => view! { <DashboardPage/> }.into_any(),
                Page::Models => view! { <ModelsPage/> }.into_any(),
                Page::Login => view! { <LoginPage/> }.into_any(),
                Page::NotFound => view! { <p>"Page not found."</p> }.into_any(),
            }}
        </main>
    }
}

/// The navigation (only the pages this user may open), who is signed in, and the way out.
#[component]
fn SignedIn(user: CurrentUser, page: Page) -> impl IntoView {
    let links = Page::ROUTES
        .iter()
        .filter(|(_, p)| p.access().is_none_or(|role| user.can(role)))
        .filter_map(|&(path, p)| Some((path, p.nav_label()?, (p == page).then_some("page"))))
        .map(|(path, label, current)| view! { <a href=path aria-current=current>{label}</a> })
        .collect_view();
    view! {
        <nav>{links}</nav>
        <span class="who" id="signed-in">{user.name.clone()}<span class="role">{user.role.name()}</span></span>
        <form method="post" action="/logout" class="sign-out">
            <button type="submit" class="secondary" id="sign-out">"Sign out"</button>
        </form>
    }
}

type Outcome = Result<PredictReply, PredictError>;

#[component]
fn HomePage() -> impl IntoView {
    let form = FormState::new();
    let submitted = RwSignal::new(None::<RawCustomer>);
    let predict = Action::new(|record: &RawCustomer| {
        let record = record.clone();
        async move { api::predict(record).await }
    });
    let what_if = Action::new(|record: &RawCustomer| {
        let record = record.clone();
        async move { api::predict(record).await }
    });
    // Field errors from the server land next to their fields.
    Effect::new(move |_| match predict.value().get() {
        Some(Err(PredictError::Invalid(errors))) => form.set_server_errors(&errors),
        Some(_) => form.clear_server_errors(),
        None => {}
    });
    let outcome = Signal::derive(move || predict.value().get());
    let on_submit = Callback::new(move |record: RawCustomer| {
        submitted.set(Some(record.clone()));
        what_if.value().set(None);
        predict.dispatch(record);
    });
    view! {
        <div class="layout">
            <section class="card form-card" aria-labelledby="form-title">
                <h1 id="form-title">"Score a customer"</h1>
                <p class="lead">"The record goes to Kafka, the scorer predicts, and the answer comes back here."</p>
                <ChurnForm state=form pending=predict.pending() on_submit=on_submit/>
            </section>
            <div class="side">
                <ResultCard outcome=outcome pending=predict.pending().into()/>
                <WhatIf submitted=submitted base=outcome what_if=what_if/>
                <StatusCard/>
            </div>
        </div>
        <LivePanel/>
    }
}

#[component]
fn Gauge(probability: f64, threshold: f64) -> impl IntoView {
    view! {
        <div class="gauge" role="meter" aria-valuemin="0" aria-valuemax="100"
            aria-valuenow=percentage_points(probability, 0) aria-label="Churn probability">
            <span class="fill" class:risk={probability >= threshold} style=format!("width:{}", percent(probability, 1))></span>
            <span class="threshold" style=format!("left:{}", percent(threshold, 1)) title="decision threshold"></span>
        </div>
    }
}

#[component]
fn ResultCard(outcome: Signal<Option<Outcome>>, pending: Signal<bool>) -> impl IntoView {
    view! {
        <section class="card result" aria-live="polite" aria-labelledby="result-title">
            <h2 id="result-title">"Prediction"</h2>
            {move || match outcome.get() {
                None if pending.get() => view! { <p class="muted">"Waiting for the scorer…"</p> }.into_any(),
                None => view! { <p class="muted">"Fill in the form and press Predict churn."</p> }.into_any(),
                Some(Err(PredictError::Invalid(_))) => view! {
                    <p class="error" role="alert">"The server rejected some fields; see the messages next to them."</p>
                }.into_any(),
                Some(Err(e)) => view! { <p class="error" id="predict-error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(reply)) => {
                    let p = reply.prediction;
                    view! {
                        <div class="verdict" id="verdict">
                            <span class="big num" id="probability">{percent(p.churn_probability, 1)}</span>
                            <span class="chip" class:risk=p.churn>{if p.churn { "likely to churn" } else { "likely to stay" }}</span>
                        </div>
                        <Gauge probability=p.churn_probability threshold=p.threshold/>
                        <p class="muted small">
                            "Threshold " {percent(p.threshold, 1)} " · model "
                            <span class="mono" id="model-version">{p.model_version.clone()}</span>
                            " · round trip " <span id="round-trip">{format!("{:.0} ms", reply.round_trip_ms)}</span>
                        </p>
                        {extrapolation_note(&p.extrapolated).map(|note| view! {
                            <p class="warning small" id="extrapolated" role="note">{note}</p>
                        })}
                        <h3>"Why"</h3>
                        <ul class="factors">
                            {p.top_factors.iter().map(|f| view! {
                                <li class:up={f.log_odds >= 0.0}>{f.describe()}
                                    <span class="muted num">{format!(" ({:+.2} log-odds)", f.log_odds)}</span></li>
                            }).collect_view()}
                        </ul>
                    }.into_any()
                }
            }}
        </section>
    }
}

/// Words for a prediction whose inputs lie outside the model's training range, naming them.
pub fn extrapolation_note(fields: &[model::Feature]) -> Option<String> {
    if fields.is_empty() {
        return None;
    }
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    Some(format!(
        "Outside the training range: {}. The model extrapolates here; trust this probability less.",
        names.join(", ")
    ))
}

/// The what-if sliders: field, min, max, step.
const WHAT_IF_SLIDERS: [(Field, f64, f64, f64); 4] = [
    (Field::NumSites, 0.0, 30.0, 1.0),
    (Field::Years, 0.0, 20.0, 0.1),
    (Field::Age, 18.0, 90.0, 1.0),
    (Field::TotalPurchase, 0.0, 30000.0, 100.0),
];

/// Sliders on the submitted record; every change goes through the same path as a submission.
#[component]
fn WhatIf(
    submitted: RwSignal<Option<RawCustomer>>,
    base: Signal<Option<Outcome>>,
    what_if: Action<RawCustomer, Outcome>,
) -> impl IntoView {
    // The usual range of each field, narrower than what validation accepts (a slider over 0–1e9
    // could not be moved by the dollar); a test keeps them inside validation's bounds.
    const SLIDERS: [(Field, f64, f64, f64); 4] = WHAT_IF_SLIDERS;
    let value_of = move |field: Field| -> f64 {
        submitted.with(|r| match r.as_ref().and_then(|r| r.get(field)) {
            Some(Scalar::Text(t)) => t.trim().parse().unwrap_or(0.0),
            Some(Scalar::Number(n)) => *n,
            _ => 0.0,
        })
    };
    let change = move |field: Field, value: String| {
        let Some(mut record) = submitted.get_untracked() else {
            return;
        };
        record.set(field, Some(Scalar::Text(value)));
        submitted.set(Some(record.clone()));
        what_if.dispatch(record);
    };
    // Shown once there is a prediction to compare with; a memo so that a new prediction does
    // not rebuild the sliders.
    let visible = Memo::new(move |_| matches!(base.get(), Some(Ok(_))));
    move || {
        visible.get().then(|| view! {
        <section class="card what-if" aria-labelledby="what-if-title">
            <h2 id="what-if-title">"What if…"</h2>
            {SLIDERS.iter().map(|&(field, min, max, step)| {
                let label = form::label_of(field);
                let id = format!("what-if-{}", field.column().to_ascii_lowercase());
                view! {
                    <div class="slider">
                        <label for=id.clone()>{label} <span class="num">{move || value_of(field)}</span></label>
                        <input type="range" id=id min=min max=max step=step
                            prop:value=move || value_of(field).to_string()
                            on:change=move |ev| change(field, event_target_value(&ev))/>
                    </div>
                }
            }).collect_view()}
            <p class="what-if-result" id="what-if-result" aria-live="polite">
                {move || match (what_if.value().get(), base.get()) {
                    (Some(Ok(now)), Some(Ok(before))) => format!(
                        "Churn probability {} (was {})",
                        percent(now.prediction.churn_probability, 1),
                        percent(before.prediction.churn_probability, 1)
                    ),
                    (Some(Err(e)), _) => e.to_string(),
                    _ if what_if.pending().get() => "Scoring…".to_owned(),
                    _ => "Move a slider to see how the risk changes.".to_owned(),
                }}
            </p>
        </section>
    })
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn an_extrapolated_prediction_names_its_fields_and_a_normal_one_says_nothing() {
        use model::Feature;
        assert_eq!(super::extrapolation_note(&[]), None);
        let note = super::extrapolation_note(&[Feature::Age, Feature::TenureYears]).unwrap();
        assert!(
            note.starts_with("Outside the training range: Age, Tenure_Years."),
            "{note}"
        );
    }

    #[test]
    fn pages_are_found_by_path() {
        assert_eq!(Page::at("/"), Page::Home);
        assert_eq!(Page::at(""), Page::Home);
        assert_eq!(Page::at("/dashboard"), Page::Dashboard);
        assert_eq!(Page::at("/dashboard/"), Page::Dashboard);
        assert_eq!(Page::at("/nope"), Page::NotFound);
        assert_eq!(Page::at("/login"), Page::Login);
        assert_eq!(Page::at("/models/"), Page::Models);
    }

    #[test]
    fn every_page_but_the_sign_in_page_needs_a_role() {
        use crate::Role;
        assert_eq!(Page::Home.access(), Some(Role::Analyst));
        assert_eq!(Page::Dashboard.access(), Some(Role::Viewer));
        assert_eq!(Page::NotFound.access(), Some(Role::Viewer));
        assert_eq!(
            Page::Models.access(),
            Some(Role::Admin),
            "publishing is for admins"
        );
        assert_eq!(Page::Login.access(), None);
    }

    #[test]
    fn every_what_if_slider_stays_inside_what_validation_accepts() {
        for (field, min, max, step) in super::WHAT_IF_SLIDERS {
            for value in [min, min + step, max] {
                let text = model::Scalar::Text(value.to_string());
                assert!(
                    model::validate_field(field, Some(&text)).is_ok(),
                    "{field:?} = {value}"
                );
            }
        }
    }
}
