//! Which role each route needs: the one table. Pages take theirs from `app::Page::access`,
//! server functions are named by their `ServerFn::PATH`; static files are open; anything not
//! listed needs a signed-in user (default deny).

use std::path::Path;

use app::api::{LiveFeed, Predict, SampleCustomer};
use app::{Page, Role};
use leptos::server_fn::ServerFn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Open,
    /// A user or token with at least this role.
    Role(Role),
    /// An API token of any role (a Prometheus scraper holds one), or a signed-in admin.
    Metrics,
}

/// Every route that is not a page, and what it needs.
pub fn rules() -> [(&'static str, Access); 11] {
    use Access::{Metrics, Open};
    [
        ("/login", Open),
        ("/logout", Access::Role(Role::Viewer)),
        ("/healthz", Open),
        ("/readyz", Open),
        ("/metrics", Metrics),
        ("/export/predictions.csv", Access::Role(Role::Analyst)),
        ("/api/v1/predict", Access::Role(Role::Analyst)),
        // Publishing a model (another part of issue 13 adds the route).
        ("/api/v1/models", Access::Role(Role::Admin)),
        (<Predict as ServerFn>::PATH, Access::Role(Role::Analyst)),
        (
            <SampleCustomer as ServerFn>::PATH,
            Access::Role(Role::Analyst),
        ),
        (<LiveFeed as ServerFn>::PATH, Access::Role(Role::Viewer)),
    ]
}

/// What the table says about `path`, if it names it (pages the way `Page::at` finds them).
pub fn listed(path: &str) -> Option<Access> {
    match Page::at(path) {
        Page::NotFound => rules()
            .into_iter()
            .find(|(p, _)| *p == path)
            .map(|(_, access)| access),
        page => Some(page.access().map_or(Access::Open, Access::Role)),
    }
}

/// What a request for `path` needs.
pub fn access(path: &str, site_root: &Path) -> Access {
    listed(path).unwrap_or_else(|| {
        if is_static_file(path, site_root) {
            Access::Open
        } else {
            Access::Role(Role::Viewer)
        }
    })
}

/// The bundle (`/pkg/...`) and the files at the site root (`/favicon.svg`): plain names only,
/// so no path can reach outside the site root.
fn is_static_file(path: &str, site_root: &Path) -> bool {
    let Some(relative) = path.strip_prefix('/') else {
        return false;
    };
    let plain = relative.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    // The bundle is open even before it is built (a 404 then).
    plain && (relative.starts_with("pkg/") || site_root.join(relative).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_need_their_role_with_or_without_a_trailing_slash() {
        assert_eq!(listed("/"), Some(Access::Role(Role::Analyst)));
        assert_eq!(listed("//"), Some(Access::Role(Role::Analyst)));
        assert_eq!(listed("/dashboard/"), Some(Access::Role(Role::Viewer)));
        assert_eq!(listed("/login"), Some(Access::Open));
        assert_eq!(listed("/api/predict"), Some(Access::Role(Role::Analyst)));
        assert_eq!(listed("/api/v1/models"), Some(Access::Role(Role::Admin)));
        assert_eq!(listed("/elsewhere"), None);
    }

    #[test]
    fn only_plain_files_under_the_site_root_are_open() {
        let site = tempfile::tempdir().unwrap();
        std::fs::write(site.path().join("favicon.svg"), "<svg/>").unwrap();
        std::fs::create_dir(site.path().join("img")).unwrap();
        std::fs::write(site.path().join("img").join("a.png"), "").unwrap();
        let root = site.path();
        assert_eq!(access("/favicon.svg", root), Access::Open);
        assert_eq!(access("/img/a.png", root), Access::Open);
        assert_eq!(access("/pkg/churn.wasm", root), Access::Open);
        for closed in [
            "/img",
            "/missing.svg",
            "/../etc/passwd",
            "/img/../favicon.svg",
            "/%66avicon.svg",
            "//favicon.svg",
            "/secrets",
            "/pkg/../secrets",
            "/pkg//x",
        ] {
            assert_eq!(access(closed, root), Access::Role(Role::Viewer), "{closed}");
        }
    }
}
