//! Access on the whole router (`oneshot`, a fake backend, a manual clock): every route refuses
//! strangers, each role gets exactly its share, and sessions, tokens, links, the proxy header
//! and the sign-in limits hold against what an attacker would try.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use app::{Page, Role};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use leptos::server_fn::ServerFn;
use tower::ServiceExt;

use super::policy::{self, Access};
use super::{links, tokens, users, Auth, AuthOptions, Clock, ProxyOptions, Secret};
use crate::web::tests::{prediction, Fake, RECORD};
use crate::web::{router_with_state, AppState, WebOptions};

struct ManualClock(Mutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// A web server on a fake pipeline, with three accounts and a clock the test moves.
struct Site {
    data: tempfile::TempDir,
    site_root: tempfile::TempDir,
    clock: Arc<ManualClock>,
    auth: Arc<Auth>,
    router: Router,
}

const PASSWORD: &str = "a long enough password";

impl Site {
    fn new() -> Site {
        Site::with(|_| {})
    }

    fn with(configure: impl FnOnce(&mut AuthOptions)) -> Site {
        let data = tempfile::tempdir().unwrap();
        let site_root = tempfile::tempdir().unwrap();
        std::fs::write(site_root.path().join("favicon.svg"), "<svg/>").unwrap();
        let mut auth_options = AuthOptions::new(data.path().to_owned());
        configure(&mut auth_options);
        let options = WebOptions::new(
            ([127, 0, 0, 1], 0).into(),
            site_root.path().to_owned(),
            false,
            auth_options.clone(),
        );
        let mut state = AppState::with_parts(
            &options,
            Arc::new(Fake::answering(Ok(prediction()))),
            Arc::default(),
            Arc::default(),
            Arc::default(),
        );
        let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
        let auth = Arc::new(Auth::with_clock(
            auth_options,
            site_root.path(),
            clock.clone(),
        ));
        state.auth = auth.clone();
        for (name, role) in [
            ("ann", Role::Admin),
            ("al", Role::Analyst),
            ("vi", Role::Viewer),
        ] {
            users::add(
                data.path(),
                name,
                role,
                &Secret::new(PASSWORD.into()),
                Utc::now(),
            )
            .unwrap();
        }
        Site {
            router: router_with_state(state),
            data,
            site_root,
            clock,
            auth,
        }
    }

    /// Time passes (the files are looked at again after a second).
    fn advance(&self, by: TimeDelta) {
        *self.clock.0.lock().unwrap() += by;
    }

    async fn send(&self, request: Request<Body>) -> Response {
        self.router.clone().oneshot(request).await.unwrap()
    }

    fn token(&self, role: Role) -> String {
        let (_, token) = tokens::create(self.data.path(), role, "test", Utc::now()).unwrap();
        self.advance(TimeDelta::seconds(2));
        token.expose().to_owned()
    }

    async fn sign_in_from(
        &self,
        user: &str,
        password: &str,
        next: &str,
        peer: [u8; 4],
    ) -> Response {
        let body = format!(
            "user={}&password={}&next={}",
            enc(user),
            enc(password),
            enc(next)
        );
        let request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(from_peer(request, peer)).await
    }

    /// Signs in and returns the session cookie's value.
    async fn session(&self, user: &str) -> String {
        let response = self.sign_in_from(user, PASSWORD, "/", [10, 0, 0, 1]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        session_cookie(response.headers()).expect("a session cookie")
    }
}

/// Form encoding: everything but letters and digits escaped.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn from_peer(mut request: Request<Body>, ip: [u8; 4]) -> Request<Body> {
    let addr = SocketAddr::from((ip, 40000));
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("churn_session="))
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let cookie = set_cookie(headers)?;
    let value = cookie["churn_session=".len()..]
        .split(';')
        .next()?
        .to_owned();
    (!value.is_empty()).then_some(value)
}

fn location(response: &Response) -> &str {
    response.headers()[header::LOCATION].to_str().unwrap()
}

fn page(path: &str) -> axum::http::request::Builder {
    Request::get(path).header(header::ACCEPT, "text/html,application/xhtml+xml")
}

fn with_session(path: &str, cookie: &str) -> Request<Body> {
    page(path)
        .header(header::COOKIE, format!("churn_session={cookie}"))
        .body(Body::empty())
        .unwrap()
}

fn with_token(method: Method, path: &str, token: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type_of(path))
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn content_type_of(path: &str) -> &'static str {
    if path.starts_with("/api/v1/") {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    }
}

async fn text_of(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every path the router serves (pages, its own routes, server functions), from the same tables
/// the router is built from.
fn every_route() -> Vec<String> {
    let pages = Page::ROUTES.iter().map(|(path, _)| path.to_string());
    let own = crate::web::route_paths().into_iter().map(str::to_owned);
    let server_fns = leptos::server_fn::axum::server_fn_paths().map(|(path, _)| path.to_owned());
    pages.chain(own).chain(server_fns).collect()
}

#[tokio::test]
async fn every_route_and_server_function_refuses_a_stranger() {
    let site = Site::new();
    let routes = every_route();
    assert!(routes
        .iter()
        .any(|p| p == <app::api::Predict as ServerFn>::PATH));
    assert!(routes
        .iter()
        .any(|p| p == <app::api::LiveFeed as ServerFn>::PATH));
    for path in routes
        .iter()
        .chain([&"/nope".to_owned(), &"/pkg/../secret".to_owned()])
    {
        let access = policy::access(path, site.site_root.path());
        if path != "/nope" && !path.starts_with("/pkg") {
            assert!(
                policy::listed(path).is_some(),
                "{path} has no entry in the route policy"
            );
        }
        if access == Access::Open {
            assert!(
                ["/login", "/healthz", "/readyz"].contains(&path.as_str()),
                "{path} is open"
            );
            continue;
        }
        for method in [Method::GET, Method::POST] {
            let request = Request::builder().method(method.clone()).uri(path.as_str());
            let response = site.send(request.body(Body::empty()).unwrap()).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path}"
            );
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
            assert!(text_of(response).await.contains("sign in first"), "{path}");
        }
        // A browser asking for it is sent to sign in, and comes back afterwards.
        let response = site.send(page(path).body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&response), app::login::sign_in_path(path));
    }
    // A stranger may sign in, and load the bundle and the icon.
    for open in ["/login", "/favicon.svg", "/healthz"] {
        let response = site.send(page(open).body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn each_role_sees_exactly_what_it_should() {
    let site = Site::new();
    let form_record: String =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(RECORD)
            .unwrap()
            .iter()
            .map(|(k, v)| format!("record[{k}]={}", enc(v.to_string().trim_matches('"'))))
            .collect::<Vec<_>>()
            .join("&");
    let predict_fn = <app::api::Predict as ServerFn>::PATH;
    let sample_fn = <app::api::SampleCustomer as ServerFn>::PATH;
    use StatusCode as S;
    // (method, path, body, viewer, analyst, admin)
    let matrix: [(Method, &str, &str, [S; 3]); 8] = [
        (
            Method::GET,
            "/export/predictions.csv",
            "",
            [S::FORBIDDEN, S::OK, S::OK],
        ),
        (
            Method::POST,
            "/api/v1/predict",
            RECORD,
            [S::FORBIDDEN, S::OK, S::OK],
        ),
        (
            Method::POST,
            predict_fn,
            &form_record,
            [S::FORBIDDEN, S::OK, S::OK],
        ),
        (Method::POST, sample_fn, "", [S::FORBIDDEN, S::OK, S::OK]),
        // Past the policy for an admin only, where `{}` is no model.
        (
            Method::POST,
            "/api/v1/models",
            "{}",
            [S::FORBIDDEN, S::FORBIDDEN, S::UNPROCESSABLE_ENTITY],
        ),
        (Method::GET, "/metrics", "", [S::OK, S::OK, S::OK]),
        (Method::GET, "/healthz", "", [S::OK, S::OK, S::OK]),
        (Method::GET, "/readyz", "", [S::OK, S::OK, S::OK]),
    ];
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let token = site.token(role);
        for (method, path, body, expected) in &matrix {
            let response = site
                .send(with_token(method.clone(), path, &token, body))
                .await;
            let status = response.status();
            let text = text_of(response).await;
            assert_eq!(status, expected[i], "{role} {method} {path}: {text}");
            if status == S::FORBIDDEN {
                assert!(text.contains(&format!("is {role}")), "{text}");
            }
        }
    }
    // Pages, as a browser with a session: a viewer asking for the score page goes to the
    // dashboard; /metrics needs an admin when it comes with a session instead of a token.
    for (user, home, metrics) in [
        ("vi", S::SEE_OTHER, S::FORBIDDEN),
        ("al", S::OK, S::FORBIDDEN),
        ("ann", S::OK, S::OK),
    ] {
        let cookie = site.session(user).await;
        let response = site.send(with_session("/", &cookie)).await;
        assert_eq!(response.status(), home, "{user} /");
        if home == S::SEE_OTHER {
            assert_eq!(location(&response), "/dashboard");
        }
        let response = site.send(with_session("/dashboard", &cookie)).await;
        assert_eq!(response.status(), S::OK, "{user} /dashboard");
        let metrics_request = Request::get("/metrics")
            .header(header::COOKIE, format!("churn_session={cookie}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            site.send(metrics_request).await.status(),
            metrics,
            "{user} /metrics"
        );
    }
}

#[tokio::test]
async fn the_page_shows_each_role_only_its_share_and_tells_the_browser_who_is_signed_in() {
    let site = Site::new();
    let viewer = text_of(
        site.send(with_session("/dashboard", &site.session("vi").await))
            .await,
    )
    .await;
    assert!(viewer.contains(r#"data-user="vi""#) && viewer.contains(r#"data-role="viewer""#));
    assert!(viewer.contains("Sign out") && viewer.contains(r#"action="/logout""#));
    assert!(
        !viewer.contains(">Score<"),
        "no link to a page a viewer may not open"
    );
    assert!(
        !viewer.contains("/export/predictions.csv"),
        "no export for a viewer"
    );
    let analyst = text_of(
        site.send(with_session("/", &site.session("al").await))
            .await,
    )
    .await;
    assert!(analyst.contains(">Score<") && analyst.contains(r#"data-role="analyst""#));
    let stranger = text_of(
        site.send(
            page("/login?next=%2Fdashboard")
                .body(Body::empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    assert!(!stranger.contains("data-user") && !stranger.contains("Sign out"));
    assert!(stranger.contains(r#"action="/login""#) && stranger.contains(r#"value="/dashboard""#));
}

#[tokio::test]
async fn server_functions_check_the_role_themselves() {
    use leptos::prelude::provide_context;
    // Straight to the server function, past the route policy (as if a route were mislabelled).
    for (user, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(Role::Viewer), StatusCode::FORBIDDEN),
        (Some(Role::Analyst), StatusCode::OK),
    ] {
        let mut request = Request::post(<app::api::SampleCustomer as ServerFn>::PATH)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::empty())
            .unwrap();
        if let Some(role) = user {
            request.extensions_mut().insert(app::CurrentUser {
                name: "x".into(),
                role,
            });
        }
        let backend = app::BackendHandle(Arc::new(Fake::answering(Ok(prediction()))));
        let response = leptos_axum::handle_server_fns_with_context(
            move || provide_context(backend.clone()),
            request,
        )
        .await;
        let response = axum::response::IntoResponse::into_response(response);
        let status = match response.status() {
            StatusCode::OK => StatusCode::OK,
            _ => {
                // The web server's one mapping of a server function's error to its status.
                let error: app::PredictError =
                    serde_json::from_str(&text_of(response).await).unwrap();
                crate::web::status_of(&error)
            }
        };
        assert_eq!(status, expected, "{user:?}");
    }
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_secure_under_tls() {
    for secure in [false, true] {
        let site = Site::with(|o| o.secure_cookies = secure);
        let response = site.sign_in_from("al", PASSWORD, "/", [10, 0, 0, 1]).await;
        let cookie = set_cookie(response.headers()).unwrap();
        let value = session_cookie(response.headers()).unwrap();
        assert_eq!(value.len(), 64, "32 random bytes");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        assert!(cookie.contains("Path=/"), "{cookie}");
        assert_eq!(cookie.contains("Secure"), secure, "{cookie}");
    }
}

#[tokio::test]
async fn signing_out_ends_the_session_for_good() {
    let site = Site::new();
    let cookie = site.session("al").await;
    assert_eq!(
        site.send(with_session("/", &cookie)).await.status(),
        StatusCode::OK
    );
    let logout = Request::post("/logout")
        .header(header::COOKIE, format!("churn_session={cookie}"))
        .body(Body::empty())
        .unwrap();
    let response = site.send(logout).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login");
    let cleared = set_cookie(response.headers()).unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie, replayed, is worth nothing.
    let response = site.send(with_session("/", &cookie)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(location(&response).starts_with("/login"));
}

#[tokio::test]
async fn sessions_expire_after_two_idle_hours_and_after_their_lifetime() {
    let site = Site::with(|o| o.session_lifetime = std::time::Duration::from_secs(12 * 3600));
    let idle = site.session("al").await;
    site.advance(TimeDelta::hours(2));
    assert_eq!(
        site.send(with_session("/", &idle)).await.status(),
        StatusCode::SEE_OTHER
    );

    let busy = site.session("al").await;
    for _ in 0..11 {
        site.advance(TimeDelta::hours(1));
        assert_eq!(
            site.send(with_session("/", &busy)).await.status(),
            StatusCode::OK
        );
    }
    site.advance(TimeDelta::hours(1));
    assert_eq!(
        site.send(with_session("/", &busy)).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_name_get_the_same_answer() {
    let site = Site::new();
    let wrong = site
        .sign_in_from("al", "not the password!", "/dashboard", [10, 0, 0, 2])
        .await;
    let unknown = site
        .sign_in_from("nobody", PASSWORD, "/dashboard", [10, 0, 0, 3])
        .await;
    for response in [&wrong, &unknown] {
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(response), "/login?next=/dashboard&failed=password");
        assert!(set_cookie(response.headers()).is_none());
    }
    let again = text_of(
        site.send(page(location(&wrong)).body(Body::empty()).unwrap())
            .await,
    )
    .await;
    assert!(again.contains("Wrong user name or password."), "{again}");
    // Fields missing altogether are a wrong sign-in too, not a crash.
    let empty = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::empty())
        .unwrap();
    assert_eq!(site.send(empty).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_removed_user_a_new_password_and_a_revoked_token_stop_working_without_a_restart() {
    let site = Site::new();
    let dir = site.data.path();
    let vi = site.session("vi").await;
    let al = site.session("al").await;
    let token = site.token(Role::Analyst);
    let export = || with_token(Method::GET, "/export/predictions.csv", &token, "");
    assert_eq!(site.send(export()).await.status(), StatusCode::OK);

    // A role change applies at the next request.
    users::set_role(dir, "vi", Role::Analyst).unwrap();
    site.advance(TimeDelta::seconds(2));
    assert_eq!(
        site.send(with_session("/", &vi)).await.status(),
        StatusCode::OK
    );

    users::remove(dir, "vi").unwrap();
    users::reset(dir, "al", &Secret::new("a brand new password".into())).unwrap();
    let id = tokens::list(dir).unwrap().last().unwrap().id.clone();
    tokens::revoke(dir, &id).unwrap();
    site.advance(TimeDelta::seconds(2));
    for cookie in [&vi, &al] {
        let response = site.send(with_session("/dashboard", cookie)).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let response = site.send(export()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(text_of(response).await.contains("not valid"));
    // A user added again under the old name does not inherit the old sessions.
    users::add(
        dir,
        "vi",
        Role::Admin,
        &Secret::new(PASSWORD.into()),
        Utc::now(),
    )
    .unwrap();
    site.advance(TimeDelta::seconds(2));
    assert_eq!(
        site.send(with_session("/dashboard", &vi)).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_bad_token_is_refused_even_with_a_good_session() {
    let site = Site::new();
    let cookie = site.session("ann").await;
    for token in ["churn_0000", "", "churn_ü"] {
        let request = Request::get("/dashboard")
            .header(header::COOKIE, format!("churn_session={cookie}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = site.send(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
}

impl Site {
    /// Posts a one-time link's token, as the link page's "Continue" button does.
    async fn use_link(&self, token: &str, origin: Option<&str>, peer: [u8; 4]) -> Response {
        let mut request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "127.0.0.1:3000");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let body = format!("once={}&next=%2F", enc(token));
        self.send(from_peer(request.body(Body::from(body)).unwrap(), peer))
            .await
    }
}

#[tokio::test]
async fn a_one_time_link_works_once_and_only_for_fifteen_minutes() {
    let site = Site::new();
    let dir = site.data.path();
    let token = links::create(dir, "al", site.auth.now()).unwrap();

    // Opening the link only asks: no session, and the link is still good.
    let url = format!("/login?once={}", token.expose());
    let opened = site.send(page(&url).body(Body::empty()).unwrap()).await;
    assert_eq!(opened.status(), StatusCode::OK);
    assert!(
        set_cookie(opened.headers()).is_none(),
        "a GET never signs in"
    );
    let form = text_of(opened).await;
    assert!(form.contains("login-continue"), "{form}");
    assert!(form.contains(token.expose()), "the form posts the token");

    // Another site cannot post it for the visitor (login CSRF): refused, link not used up.
    let foreign = site
        .use_link(token.expose(), Some("http://evil.example"), [10, 0, 0, 2])
        .await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(foreign.headers()).is_none());

    let response = site
        .use_link(token.expose(), Some("http://127.0.0.1:3000"), [10, 0, 0, 2])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/");
    let cookie = session_cookie(response.headers()).unwrap();
    assert_eq!(
        site.send(with_session("/", &cookie)).await.status(),
        StatusCode::OK
    );

    let used = site.use_link(token.expose(), None, [10, 0, 0, 2]).await;
    assert_eq!(location(&used), "/login?next=/&failed=link");
    assert!(set_cookie(used.headers()).is_none());

    let late = links::create(dir, "al", site.auth.now()).unwrap();
    site.advance(TimeDelta::minutes(15));
    let expired = site.use_link(late.expose(), None, [10, 0, 0, 2]).await;
    assert_eq!(location(&expired), "/login?next=/&failed=link");
    assert!(set_cookie(expired.headers()).is_none());
    let guessed = site.use_link("00", None, [10, 0, 0, 2]).await;
    assert_eq!(location(&guessed), "/login?next=/&failed=link");
}

#[tokio::test]
async fn guessing_links_gets_429_per_address_without_touching_the_file_lock() {
    let site = Site::new();
    let good = links::create(site.data.path(), "al", site.auth.now()).unwrap();
    let lock = links::path(site.data.path()).with_extension("json.lock");
    let _ = std::fs::remove_file(&lock);
    for i in 0..super::limits::MAX_FAILURES {
        let guess = site
            .use_link(&format!("{i:064x}"), None, [10, 6, 6, 6])
            .await;
        assert_eq!(guess.status(), StatusCode::SEE_OTHER);
    }
    assert!(!lock.exists(), "a guess takes no lock and writes nothing");
    let blocked = site.use_link(good.expose(), None, [10, 6, 6, 6]).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers().contains_key(header::RETRY_AFTER));
    // The link was not used by the refused try: its owner, elsewhere, still gets in.
    let owner = site.use_link(good.expose(), None, [10, 5, 5, 5]).await;
    assert!(session_cookie(owner.headers()).is_some());
}

#[tokio::test]
async fn after_signing_in_only_local_paths_are_followed() {
    let site = Site::new();
    for (next, expected) in [
        ("/dashboard", "/dashboard"),
        (
            "/export/predictions.csv?minutes=5",
            "/export/predictions.csv?minutes=5",
        ),
        ("//evil.com", "/"),
        ("/\\evil.com", "/"),
        ("https://evil.com", "/"),
        ("/%2F%2Fevil", "/"),
        ("/%5Cevil.com", "/"),
        ("/\t/evil.com", "/"),
        ("", "/"),
    ] {
        let response = site.sign_in_from("al", PASSWORD, next, [10, 0, 0, 4]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), expected, "next={next:?}");
    }
}

#[tokio::test]
async fn the_proxy_header_is_honoured_only_from_a_trusted_peer() {
    let header_name = axum::http::HeaderName::from_static("x-forwarded-user");
    let proxy = |default_role| ProxyOptions {
        header: header_name.clone(),
        trusted: vec!["10.0.0.5".parse().unwrap()],
        default_role,
    };
    let site = Site::with(|o| o.proxy = Some(proxy(None)));
    let as_user = |user: &str, peer: Option<[u8; 4]>| {
        let request = Request::get("/export/predictions.csv")
            .header("X-Forwarded-User", user)
            .body(Body::empty())
            .unwrap();
        match peer {
            Some(ip) => from_peer(request, ip),
            None => request,
        }
    };
    assert_eq!(
        site.send(as_user("al", Some([10, 0, 0, 5]))).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        site.send(as_user("vi", Some([10, 0, 0, 5]))).await.status(),
        StatusCode::FORBIDDEN
    );
    // From anyone else, or with no known peer, the header means nothing.
    for peer in [Some([10, 0, 0, 6]), Some([127, 0, 0, 1]), None] {
        let response = site.send(as_user("ann", peer)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{peer:?}");
    }
    // An IPv4 proxy seen over an IPv6 socket is still that proxy.
    let mut mapped = as_user("al", None);
    let v6: SocketAddr = "[::ffff:10.0.0.5]:4000".parse().unwrap();
    mapped.extensions_mut().insert(ConnectInfo(v6));
    assert_eq!(site.send(mapped).await.status(), StatusCode::OK);
    // A stranger the proxy vouches for: refused with what to do, unless there is a default role.
    let response = site.send(as_user("zoe", Some([10, 0, 0, 5]))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(text_of(response).await.contains("churn users add zoe"));
    let response = site.send(as_user("../x y", Some([10, 0, 0, 5]))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let lenient = Site::with(|o| o.proxy = Some(proxy(Some(Role::Analyst))));
    assert_eq!(
        lenient
            .send(as_user("zoe", Some([10, 0, 0, 5])))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn guessing_passwords_gets_429_per_address_and_cannot_lock_an_account_out() {
    let site = Site::new();
    for _ in 0..super::limits::MAX_FAILURES {
        let response = site
            .sign_in_from("al", "wrong guess here", "/", [10, 9, 9, 9])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let blocked = site.sign_in_from("al", PASSWORD, "/", [10, 9, 9, 9]).await;
    assert_eq!(
        blocked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password"
    );
    let wait: u64 = blocked.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&wait), "{wait}");
    // Another name from the same address: blocked too. The same name from elsewhere is not: a
    // guesser cannot lock the account's owner out.
    let elsewhere = site.sign_in_from("al", PASSWORD, "/", [10, 8, 8, 8]).await;
    assert_eq!(elsewhere.status(), StatusCode::SEE_OTHER);
    assert!(session_cookie(elsewhere.headers()).is_some());
    let other_name = site.sign_in_from("ann", PASSWORD, "/", [10, 9, 9, 9]).await;
    assert_eq!(other_name.status(), StatusCode::TOO_MANY_REQUESTS);
    // Others are not locked out, and after the window the user may try again.
    let other = site.sign_in_from("ann", PASSWORD, "/", [10, 7, 7, 7]).await;
    assert_eq!(other.status(), StatusCode::SEE_OTHER);
    assert!(session_cookie(other.headers()).is_some());
    site.advance(TimeDelta::minutes(15));
    let later = site.sign_in_from("al", PASSWORD, "/", [10, 9, 9, 9]).await;
    assert!(session_cookie(later.headers()).is_some());
}

#[tokio::test]
async fn metrics_are_open_on_their_own_listener_only() {
    let site = Site::with(|o| o.metrics_elsewhere = true);
    let token = site.token(Role::Admin);
    let response = site
        .send(with_token(Method::GET, "/metrics", &token, ""))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = site
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_files_are_owner_only_and_hold_no_password_or_token() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    let dir = site.data.path();
    let token = site.token(Role::Viewer);
    let link = links::create(dir, "al", site.auth.now()).unwrap();
    for (path, secret) in [
        (users::path(dir), PASSWORD),
        (tokens::path(dir), token.as_str()),
        (links::path(dir), link.expose()),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(secret), "{}", path.display());
    }
}

/// A log that tests can read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_password_never_reaches_the_log_or_debug_output() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let site = Site::new();
    let secret = "hunter2 but longer";
    site.sign_in_from("al", secret, "/", [10, 0, 0, 1]).await;
    site.sign_in_from(secret, secret, "/", [10, 0, 0, 1]).await;
    site.sign_in_from("al", PASSWORD, "/", [10, 0, 0, 1]).await;
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("a sign-in failed: unknown user name"),
        "the log works: {text}"
    );
    assert!(text.contains("a sign-in failed: wrong password"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains(PASSWORD),
        "{text}"
    );

    let form: super::login::SignInForm = serde_urlencoded_form(secret);
    assert!(!format!("{form:?}").contains("hunter2"));
    assert!(!format!("{:?}", Secret::new(secret.into())).contains("hunter2"));
    let user = &users::list(site.data.path()).unwrap()[0];
    assert!(!format!("{user:?}").contains("argon2"));
}

fn serde_urlencoded_form(password: &str) -> super::login::SignInForm {
    serde_json::from_value(serde_json::json!({ "user": "al", "password": password, "next": "/" }))
        .unwrap()
}
