//! The admin's Models page: the lineup, a model file uploaded as champion or challenger, the
//! challenger withdrawn, and the history. Uploads go to `POST /api/v1/models?seat=...` (the
//! same verified path as the API: the browser sends the file as it is), withdrawals to
//! `DELETE /api/v1/models?seat=challenger`; the page then updates from the live feed.

use leptos::prelude::*;

use crate::api::Seat;
use crate::lifecycle::{DuelCard, HistoryCard};
use crate::live::LiveState;

/// Largest model file the server takes (`MAX_MODEL_BYTES` there): checked before sending.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub const MAX_MODEL_BYTES: f64 = 1024.0 * 1024.0;

/// What the server's answer to an upload or a withdrawal means for the person who sent it.
/// `error` is the server's own message (it says what to do) when it sent one.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn answer_words(status: u16, error: Option<&str>) -> String {
    let error = error.unwrap_or("");
    match status {
        401 => "Your session has ended: sign in again, then retry.".to_owned(),
        403 => format!("Not allowed: {error}"),
        413 => "The file is larger than 1 MiB: choose the model file `churn train` wrote.".to_owned(),
        422 => format!(
            "The server refused this model, as every scorer would: {error}. Upload the file exactly as `churn train` wrote it (signed with the server's key, if it has one)."
        ),
        400 | 503 => error.to_owned(),
        _ => format!("The server answered {status}: try again in a moment. {error}"),
    }
}

#[component]
pub fn ModelsPage() -> impl IntoView {
    let live = expect_context::<LiveState>();
    let file = NodeRef::<leptos::html::Input>::new();
    // The seat is read from the radios when the form is sent: what they show is what is sent,
    // even when the browser restored a choice on reload.
    let champion = NodeRef::<leptos::html::Input>::new();
    // The answer to the latest upload or withdrawal.
    let message = RwSignal::new(None::<Answer>);
    // What is being sent, while it is. Plain tasks rather than `Action`s: the page has no use
    // for an action's history, and each one costs the bundle its own copy of the machinery.
    let sending = RwSignal::new(None::<Sending>);
    let send = move |what: Sending| {
        if sending.get_untracked().is_some() {
            return;
        }
        sending.set(Some(what));
        leptos::task::spawn_local(async move {
            let answer = match what {
                Sending::Upload(seat) => send_upload(file, seat).await,
                Sending::Withdrawal => send_withdrawal().await,
            };
            message.set(Some(answer));
            sending.set(None);
        });
    };
    let has_challenger = move || live.challenger.with(Option::is_some);
    let busy = move || sending.get().is_some();
    view! {
        <section class="card" aria-labelledby="models-title">
            <h1 id="models-title">"Models"</h1>
            <p class="lead">"The champion answers every prediction users see. A challenger is scored on the same records in the shadow; its scores never reach users, and the duel compares the two on live outcomes."</p>
            <form class="upload" id="upload-form" on:submit=move |ev| {
                ev.prevent_default();
                let as_champion = champion.get_untracked().is_some_and(|radio| radio.checked());
                send(Sending::Upload(if as_champion { Seat::Champion } else { Seat::Challenger }));
            }>
                <div class="field">
                    <label for="model-file">"Model file"</label>
                    <input type="file" id="model-file" accept=".json,application/json" node_ref=file/>
                    <span class="hint">"The JSON file "<span class="mono">"churn train"</span>" writes; verified by the server exactly as the scorers verify it."</span>
                </div>
                <fieldset class="seat">
                    <legend>"Publish as"</legend>
                    <label><input type="radio" name="seat" id="seat-challenger" value="challenger" checked/>
                        " challenger " <span class="hint">"(scored in the shadow)"</span></label>
                    <label><input type="radio" name="seat" id="seat-champion" value="champion" node_ref=champion/>
                        " champion " <span class="hint">"(every scorer switches to it)"</span></label>
                </fieldset>
                <div class="form-actions">
                    <button type="submit" id="upload" disabled=busy>
                        {move || if matches!(sending.get(), Some(Sending::Upload(_))) { "Publishing…" } else { "Publish" }}
                    </button>
                    <button type="button" class="secondary" id="withdraw-challenger"
                        disabled=move || busy() || !has_challenger()
                        on:click=move |_| send(Sending::Withdrawal)>
                        "Withdraw the challenger"
                    </button>
                </div>
            </form>
            <p class="upload-result" id="upload-result" role="status" aria-live="polite">
                {move || message.get().map(|answer| {
                    let ok = answer.is_ok();
                    view! {
                        <span class=if ok { "ok" } else { "error" } role=(!ok).then_some("alert")>
                            {answer.unwrap_or_else(|refused| refused)}
                        </span>
                    }
                })}
            </p>
        </section>
        <DuelCard/>
        <HistoryCard/>
    }
}

/// A request the page sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    Upload(Seat),
    Withdrawal,
}

type Answer = Result<String, String>;

/// Sends the chosen file to the server in `seat`.
#[cfg(feature = "hydrate")]
async fn send_upload(file: NodeRef<leptos::html::Input>, seat: Seat) -> Answer {
    let chosen = file
        .get_untracked()
        .and_then(|input| input.files())
        .and_then(|files| files.get(0));
    let Some(chosen) = chosen else {
        return Err("Choose a model file first (the JSON file `churn train` writes).".into());
    };
    if chosen.size() > MAX_MODEL_BYTES {
        return Err(answer_words(413, None));
    }
    let request = gloo_net::http::Request::post(&format!("/api/v1/models?seat={}", seat.name()))
        .header("content-type", "application/json")
        .body(chosen);
    let response = match request {
        Ok(request) => request.send().await,
        Err(e) => Err(e),
    };
    let (status, body) = read(response).await?;
    if status == 200 {
        let version = body.version.unwrap_or_else(|| "the model".into());
        Ok(match seat {
            Seat::Champion => {
                format!("Published {version} as champion: every scorer switches to it.")
            }
            Seat::Challenger => format!(
                "Published {version} as challenger: every scorer now scores it in the shadow."
            ),
        })
    } else {
        Err(answer_words(status, body.error.as_deref()))
    }
}

/// Asks the server to withdraw the challenger.
#[cfg(feature = "hydrate")]
async fn send_withdrawal() -> Answer {
    let response = gloo_net::http::Request::delete("/api/v1/models?seat=challenger")
        .send()
        .await;
    match read(response).await? {
        (200, _) => Ok("Withdrew the challenger: scorers stop scoring it.".into()),
        (status, body) => Err(answer_words(status, body.error.as_deref())),
    }
}

/// What the models API answers, as far as the page reads it. Typed, not `serde_json::Value`:
/// a generic JSON value costs the WASM bundle its own parser and map (measured: the bundle had
/// grown from 241 to 298 KiB gzipped with the models page).
#[cfg(feature = "hydrate")]
#[derive(Default, serde::Deserialize)]
struct ApiAnswer {
    version: Option<String>,
    error: Option<String>,
}

/// The status and the answer (empty when there is none, or it is not one), or what to do when
/// the server could not be reached.
#[cfg(feature = "hydrate")]
async fn read(
    response: Result<gloo_net::http::Response, gloo_net::Error>,
) -> Result<(u16, ApiAnswer), String> {
    let response = response.map_err(|e| {
        format!("Could not reach the server ({e}): check the connection and retry.")
    })?;
    // From bytes, as the server functions' answers are read: `Response::json` would parse from
    // a `str`, a second copy of the JSON parser in the bundle (measured: 1.4 KiB gzipped).
    let body = match response.binary().await {
        Ok(bytes) => serde_json::from_slice::<ApiAnswer>(&bytes).unwrap_or_default(),
        Err(_) => ApiAnswer::default(),
    };
    Ok((response.status(), body))
}

// On the server the page renders; only the browser sends.
#[cfg(not(feature = "hydrate"))]
async fn send_upload(_: NodeRef<leptos::html::Input>, _: Seat) -> Answer {
    Err("the page is still loading".into())
}

#[cfg(not(feature = "hydrate"))]
async fn send_withdrawal() -> Answer {
    Err("the page is still loading".into())
}

#[cfg(test)]
mod tests {
    use super::answer_words;

    #[test]
    fn every_refusal_says_what_to_do() {
        assert!(answer_words(401, None).contains("sign in again"));
        let refused = answer_words(422, Some("model changed after training"));
        assert!(refused.contains("changed after training"), "{refused}");
        assert!(refused.contains("churn train"), "{refused}");
        assert!(answer_words(413, None).contains("1 MiB"));
        let busy = "Kafka is not reachable right now (error id x)";
        assert_eq!(answer_words(503, Some(busy)), busy);
        let forbidden = answer_words(403, Some("this needs the admin role"));
        assert!(forbidden.contains("admin role"), "{forbidden}");
        assert!(answer_words(500, None).contains("try again"));
    }
}
