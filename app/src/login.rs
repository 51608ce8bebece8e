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

/// The query string of the request being rendered.
#[cfg(feature = "ssr")]
fn current_query() -> String {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.uri.query().map(str::to_owned))
        .unwrap_or_default()
}

/// A plain HTML form posted to the server (`POST /login`): it works before the WASM bundle loads.
/// Opened from a one-time link (`/login?once=...`) it asks for one click instead: the token is
/// posted, not used by the GET, so another site cannot sign a visitor into someone's account.
///
/// The page has nothing for the browser to do, so only the server renders its inside: hydration
/// keeps the server's markup (it does not rewrite inner HTML), and the bundle carries no code for
/// it (measured: 2.5 KiB gzipped).
#[component]
pub fn LoginPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    let inside = crate::pushed::render_html(form);
    #[cfg(not(feature = "ssr"))]
    let inside = String::new();
    view! { <section class="card login-card" aria-labelledby="login-title" inner_html=inside></section> }
}

/// The sign-in form, or the one-time link's confirmation.
#[cfg(feature = "ssr")]
fn form() -> AnyView {
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
    }
    .into_any()
}

/// The one-time link's page: what the link does, and the button that uses it. Not autofocused:
/// a page that opens this one while its visitor types could otherwise press it for them.
#[cfg(feature = "ssr")]
#[component]
fn LinkConfirmation(once: String) -> impl IntoView {
    view! {
        <h1 id="login-title">"Sign in with a one-time link"</h1>
        <p class="lead">"This link signs you in once, within 15 minutes of being made. "
            "Continue only if you asked for it: it may be someone else's account."</p>
        <form method="post" action="/login" class="login-form">
            <input type="hidden" name="once" value=once/>
            <input type="hidden" name="next" value="/"/>
            <div class="form-actions"><button type="submit" id="login-continue">"Continue to the app"</button></div>
        </form>
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

    /// The page as the server renders it for `uri`, hydration markers left out.
    fn page_at(uri: &str) -> String {
        let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        Owner::new()
            .with(|| {
                provide_context(parts);
                view! { <LoginPage/> }.to_html()
            })
            .replace("<!>", "")
    }

    #[test]
    fn the_server_renders_the_whole_page_and_keeps_what_it_is_given_as_text() {
        let page = page_at("/login?next=%2Fdashboard");
        assert!(page.starts_with("<section "), "{page}");
        assert!(
            page.ends_with("</p></section>"),
            "one card, all inside: {page}"
        );
        for part in [
            r#"class="card login-card""#,
            r#"aria-labelledby="login-title""#,
            r#"id="login-submit""#,
            r#"name="next" value="/dashboard""#,
            "autofocus",
        ] {
            assert!(page.contains(part), "{part} missing in {page}");
        }
        assert!(!page.contains("login-error"), "{page}");
        // Another site's address is not a place to go after signing in.
        let page = page_at("/login?next=https%3A%2F%2Fevil.example%2F&failed=1");
        assert!(page.contains(r#"name="next" value="/""#), "{page}");
        assert!(page.contains("Wrong user name or password"), "{page}");

        // A one-time link asks for one click, and its token stays an attribute's text.
        let page = page_at("/login?once=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E");
        assert!(page.contains(r#"id="login-continue""#), "{page}");
        assert!(!page.contains("autofocus"), "{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains(r#"name="once" value="&quot;"#), "{page}");
    }
}
