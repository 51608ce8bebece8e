//! The check on every request: who it comes from (API token, then session cookie, then a
//! trusted proxy's header), then what the route policy says. The user goes into the request's
//! extensions as `app::CurrentUser` for the handlers, server functions and pages.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use app::{CurrentUser, Page, Role};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use axum_extra::extract::CookieJar;

use super::login::SESSION_COOKIE;
use super::policy::{self, Access};
use super::Auth;

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Token,
    Session,
    Proxy,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub user: CurrentUser,
    pub via: Via,
}

/// A request that claimed an identity it does not have: refused, never treated as anonymous.
#[derive(Debug)]
pub enum Refusal {
    BadToken,
    UnknownProxyUser(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::BadToken => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
                Json(serde_json::json!({
                    "error": "this API token is not valid (revoked, or mistyped): `churn tokens list` shows the valid ones, `churn tokens create --role analyst` makes a new one"
                })),
            )
                .into_response(),
            Refusal::UnknownProxyUser(name) => (
                StatusCode::FORBIDDEN,
                Json(serde_json::json!({
                    "error": format!("the sign-on proxy names the user {name:?}, who has no account here: an admin can run `churn users add {name} --role viewer`, or start the server with --proxy-default-role viewer")
                })),
            )
                .into_response(),
        }
    }
}

/// The client's address as the server saw it (no proxy header involved).
pub fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

/// Who `request` comes from, if anyone.
pub fn identify(auth: &Auth, request: &Request) -> Result<Option<Identity>, Refusal> {
    let headers = request.headers();
    if let Some(token) = bearer_token(headers) {
        return match auth.token_user(&token) {
            Some(user) => Ok(Some(Identity {
                user,
                via: Via::Token,
            })),
            None => Err(Refusal::BadToken),
        };
    }
    let jar = CookieJar::from_headers(headers);
    if let Some(user) = jar
        .get(SESSION_COOKIE)
        .and_then(|cookie| auth.session_user(cookie.value()))
    {
        return Ok(Some(Identity {
            user,
            via: Via::Session,
        }));
    }
    proxy_user(auth, request)
}

/// `Authorization: Bearer <token>` (a token that is not text matches none, and is refused);
/// another scheme is not ours and is ignored.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| String::from_utf8_lossy(&value[7..]).trim().to_owned())
}

fn proxy_user(auth: &Auth, request: &Request) -> Result<Option<Identity>, Refusal> {
    let Some(proxy) = &auth.options.proxy else {
        return Ok(None);
    };
    let Some(value) = request.headers().get(&proxy.header) else {
        return Ok(None);
    };
    let peer = peer_ip(request.extensions());
    if !peer.is_some_and(|ip| proxy.trusted.contains(&ip)) {
        if auth.should_warn_about_proxy_header() {
            tracing::warn!(peer = ?peer, header = %proxy.header,
                "ignored a sign-on header from a peer that is not in --trusted-proxies (logged once a minute)");
        }
        return Ok(None);
    }
    let name = value.to_str().unwrap_or("").trim();
    if super::users::check_name(name).is_err() {
        return Err(Refusal::UnknownProxyUser(name.chars().take(64).collect()));
    }
    match auth.proxy_user_role(name) {
        Some(role) => Ok(Some(Identity {
            user: CurrentUser {
                name: name.to_owned(),
                role,
            },
            via: Via::Proxy,
        })),
        None => Err(Refusal::UnknownProxyUser(name.to_owned())),
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`, in `web::router_with_state`).
pub async fn require_access(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let access = policy::access(&path, &auth.site_root);
    if access == Access::Metrics && auth.options.metrics_elsewhere {
        return StatusCode::NOT_FOUND.into_response();
    }
    let identity = match identify(&auth, &request) {
        Ok(identity) => identity,
        Err(refusal) => return refusal.into_response(),
    };
    let allowed = match (access, &identity) {
        (Access::Open, _) => true,
        (_, None) => return sign_in_first(&request),
        (Access::Role(role), Some(id)) => id.user.can(role),
        (Access::Metrics, Some(id)) => id.via == Via::Token || id.user.can(Role::Admin),
    };
    match identity {
        Some(id) if !allowed => forbidden(&request, &id.user, access),
        Some(id) => {
            request.extensions_mut().insert(id.user);
            next.run(request).await
        }
        None => next.run(request).await,
    }
}

/// A browser asking for a page (GET, accepts HTML): not JSON but a page to go to.
fn wants_page(request: &Request) -> bool {
    request.method() == Method::GET
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

fn sign_in_first(request: &Request) -> Response {
    if wants_page(request) {
        let next = request.uri().path_and_query().map_or("/", |p| p.as_str());
        return Redirect::to(&app::login::sign_in_path(next)).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({
            "error": "sign in first: open /login in a browser, or send an API token as `Authorization: Bearer <token>` (an admin makes one with `churn tokens create --role analyst`)"
        })),
    )
        .into_response()
}

fn forbidden(request: &Request, user: &CurrentUser, access: Access) -> Response {
    if wants_page(request) {
        // A viewer asking for the score page goes to the first page they may open.
        let open = Page::ROUTES.iter().find(|(path, page)| {
            *path != request.uri().path() && page.access().is_some_and(|role| user.can(role))
        });
        if let Some((path, _)) = open {
            return Redirect::to(path).into_response();
        }
    }
    let needs = match access {
        Access::Role(role) => format!("the {role} role"),
        Access::Metrics | Access::Open => "an API token or the admin role".to_owned(),
    };
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({
            "error": format!("this needs {needs}, and {} is {}: ask an admin for more access", user.name, user.role)
        })),
    )
        .into_response()
}
