//! Signing in and out: `POST /login` (the sign-in page's form, with a password or with a
//! one-time link's token) and `POST /logout`. Opening a link (`GET /login?once=<token>`) only
//! shows a "Continue" button that posts the token: a GET that signed in would let another site
//! sign a visitor into the attacker's account (login CSRF), while a POST is same-origin checked.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, Extensions, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{post, MethodRouter};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;

use super::check::peer_ip;
use super::{Auth, Secret, SignInError};

pub const SESSION_COOKIE: &str = "churn_session";

/// The routes of this module, with their paths (the route policy names each one).
pub fn routes<S>() -> [(&'static str, MethodRouter<S>); 2]
where
    S: Clone + Send + Sync + 'static,
    Arc<Auth>: FromRef<S>,
{
    [("/login", post(sign_in)), ("/logout", post(sign_out))]
}

/// The sign-in form. Not `Debug`-derived: the password must not reach a log.
#[derive(serde::Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    /// A one-time link's token, instead of a name and password.
    #[serde(default)]
    once: String,
}

impl std::fmt::Debug for SignInForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInForm")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("next", &self.next)
            .field("once", &"<redacted>")
            .finish()
    }
}

/// The session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page
/// sends it), `Secure` under HTTPS.
fn session_cookie(auth: &Auth, value: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(auth.options.secure_cookies)
        .build()
}

fn signed_in(auth: &Auth, session: Secret, to: &str) -> Response {
    let jar = CookieJar::new().add(session_cookie(auth, session.expose().to_owned()));
    (jar, Redirect::to(to)).into_response()
}

async fn sign_in(
    State(auth): State<Arc<Auth>>,
    extensions: Extensions,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = app::login::local_path(&form.next).unwrap_or("/").to_owned();
    let peer = peer_ip(&extensions);
    let (signed, failed_page) = if form.once.is_empty() {
        let password = Secret::new(form.password);
        let signed = auth.sign_in(&form.user, password, peer).await;
        (signed, app::login::FAILED_PASSWORD)
    } else {
        let signed = auth.sign_in_with_link(&form.once, peer).await;
        (signed, app::login::FAILED_LINK)
    };
    match signed {
        Ok(session) => signed_in(&auth, session, &next),
        Err(SignInError::Wrong) => {
            let again = format!("{}&failed={failed_page}", app::login::sign_in_path(&next));
            Redirect::to(&again).into_response()
        }
        Err(e @ (SignInError::TooMany(_) | SignInError::Busy)) => {
            let wait = match &e {
                SignInError::TooMany(wait) => wait.as_secs().max(1),
                _ => 1,
            };
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, wait.to_string())],
                e.to_string(),
            )
                .into_response()
        }
        Err(SignInError::Server(e)) => {
            // The detail (a path under the data directory) goes to the log, not the browser.
            let id = crate::error_id::log("signing in", &e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Signing in failed on the server (error id {id}): tell an admin."),
            )
                .into_response()
        }
    }
}

async fn sign_out(State(auth): State<Arc<Auth>>, jar: CookieJar) -> Response {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        auth.sign_out(cookie.value());
    }
    let mut gone = session_cookie(&auth, String::new());
    gone.make_removal();
    (CookieJar::new().add(gone), Redirect::to("/login")).into_response()
}
