//! The sign-in page, and the two facts about its address the server shares with it: how
//! `/login?next=...` is written and read, and which `next` values are safe to go back to.

use leptos::prelude::*;

/// Why the sign-in page is shown again (`/login?failed=...`).
pub const FAILED_PASSWORD: &str = "password";
pub const FAILED_LINK: &str = "link";

/// `/login?next=<path>`: where a browser without a session is sent.
pub fn sign_in_path(next: &str) -> String {
    format!("/login?next={}", encode(next))
}

/// `next` when it is a path on this site, else `None` (the caller goes to `/`): it must start
/// with a single `/`, hold only visible ASCII (browsers drop tabs and newlines, so `/\t/evil.com`
/// would become `//evil.com`), and no `//`, `\` or encoded slash or backslash anywhere.
pub fn local_path(next: &str) -> Option<&str> {
    let lower = next.to_ascii_lowercase();
    let safe = next.starts_with('/')
        && next.len() <= 2048
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && !next.contains("//")
        && !lower.contains("%2f")
        && !lower.contains("%5c");
    safe.then_some(next)
}

/// The decoded value of `name` in a query string (`a=1&b=%2F`), `+` read as a space.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .trim_start_matches('?')
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(key)?, decode(value)?))
        })
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// Percent-encodes everything but unreserved characters and `/` (the app has no URL crate; the
/// browser bundle stays small).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The query string of the page being rendered (the server's request, the browser's address).
fn current_query() -> String {
    #[cfg(feature = "ssr")]
    let query = use_context::<http::request::Parts>()
        .and_then(|parts| parts.uri.query().map(str::to_owned));
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    let query = window().location().search().ok();
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let query: Option<String> = None;
    query.unwrap_or_default()
}

/// A plain HTML form posted to the server (`POST /login`): it works before the WASM bundle loads.
/// Opened from a one-time link (`/login?once=...`) it asks for one click instead: the token is
/// posted, not used by the GET, so another site cannot sign a visitor into someone's account.
#[component]
pub fn LoginPage() -> impl IntoView {
    let query = current_query();
    let next = query_param(&query, "next")
        .filter(|next| local_path(next).is_some())
        .unwrap_or_else(|| "/".to_owned());
    if let Some(once) = query_param(&query, "once").filter(|once| !once.is_empty()) {
        return view! { <LinkConfirmation once=once/> }.into_any();
    }
    let failed = query_param(&query, "failed").map(|why| match why.as_str() {
        FAILED_LINK => "This sign-in link was already used or has expired: ask an admin for a new one (churn users link NAME).",
        _ => "Wrong user name or password.",
    });
    view! {
        <section class="card login-card" aria-labelledby="login-title">
            <h1 id="login-title">"Sign in"</h1>
            <p class="lead">"Customer names and predictions are shown to signed-in people only."</p>
            {failed.map(|message| view! { <p class="error" role="alert" id="login-error">{message}</p> })}
            <form method="post" action="/login" class="login-form">
                <div class="field">
                    <label for="login-user">"User name"</label>
                    <input id="login-user" name="user" autocomplete="username" required autofocus/>
                </div>
                <div class="field">
                    <label for="login-password">"Password"</label>
                    <input id="login-password" name="password" type="password" autocomplete="current-password" required/>
                </div>
                <input type="hidden" name="next" value=next/>
                <div class="form-actions"><button type="submit" id="login-submit">"Sign in"</button></div>
            </form>
            <p class="muted small">"No account yet? An admin creates one with "
                <span class="mono">"churn users add NAME --role viewer"</span>
                " or prints a one-time sign-in link with "<span class="mono">"churn users link NAME"</span>"."</p>
        </section>
    }
    .into_any()
}

/// The one-time link's page: what the link does, and the button that uses it. Not autofocused:
/// a page that opens this one while its visitor types could otherwise press it for them.
#[component]
fn LinkConfirmation(once: String) -> impl IntoView {
    view! {
        <section class="card login-card" aria-labelledby="login-title">
            <h1 id="login-title">"Sign in with a one-time link"</h1>
            <p class="lead">"This link signs you in once, within 15 minutes of being made. "
                "Continue only if you asked for it: it may be someone else's account."</p>
            <form method="post" action="/login" class="login-form">
                <input type="hidden" name="once" value=once/>
                <input type="hidden" name="next" value="/"/>
                <div class="form-actions"><button type="submit" id="login-continue">"Continue to the app"</button></div>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_local() {
        for good in ["/", "/dashboard", "/export/predictions.csv?minutes=5"] {
            assert_eq!(local_path(good), Some(good));
        }
        for bad in [
            "",
            "dashboard",
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "javascript:alert(1)",
            "/%2F%2Fevil",
            "/%2f/evil",
            "/%5Cevil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/ /evil.com",
            "/a//b",
            "/é",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(3000))), None);
    }

    #[test]
    fn next_survives_the_round_trip_through_the_sign_in_address() {
        for next in ["/", "/export/predictions.csv?minutes=5&x=a b", "/é?q=%2F"] {
            let path = sign_in_path(next);
            let query = path.split_once('?').unwrap().1;
            assert_eq!(query_param(query, "next").as_deref(), Some(next), "{path}");
        }
        assert_eq!(
            query_param("?a=1&next=%2Fx+y", "next").as_deref(),
            Some("/x y")
        );
        assert_eq!(query_param("a=1", "next"), None);
        assert_eq!(
            query_param("next=%zz", "next"),
            None,
            "bad escapes are no value"
        );
        assert_eq!(query_param("next=%", "next"), None);
        assert_eq!(query_param("next=%FF", "next"), None, "not UTF-8");
        assert_eq!(query_param("failed", "failed").as_deref(), Some(""));
    }
}
