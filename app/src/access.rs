//! Who is asking: the roles and the signed-in user. The server decides who someone is (session
//! cookie, API token or a trusted proxy's header) and puts a `CurrentUser` in the request's
//! extensions; the server functions and the pages read it from there.

use serde::{Deserialize, Serialize};

/// What a person or program may see and do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The dashboard's aggregates only: no customer names, no scoring.
    Viewer,
    /// Plus the score form, the live feed with names, the riskiest list and the CSV export.
    Analyst,
    /// Plus publishing models and seeing the broker and topic settings.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Analyst, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(text.trim()))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::parse(text)
            .ok_or_else(|| format!("unknown role {text:?}: use viewer, analyst or admin"))
    }
}

/// The signed-in user (or API token) a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    /// A user name, or `token:<id>` for an API token.
    pub name: String,
    pub role: Role,
}

impl CurrentUser {
    /// Whether this user has at least `role`.
    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// A live-feed connection's share of the server's limits, put in the request's extensions by
/// the server and held by the feed until the browser goes away.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct FeedSlot(pub std::sync::Arc<dyn std::any::Any + Send + Sync>);

/// The signed-in user, to shape the page: from the request on the server, and in the browser from
/// the `data-user` / `data-role` attributes the server wrote on `<html>` (so hydration sees the
/// same tree without a round trip). The server decides access; this only decides what to show.
pub fn signed_in_user() -> Option<CurrentUser> {
    #[cfg(feature = "ssr")]
    {
        leptos::prelude::use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<CurrentUser>().cloned())
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        let root = leptos::prelude::document().document_element()?;
        Some(CurrentUser {
            name: root.get_attribute("data-user")?,
            role: Role::parse(&root.get_attribute("data-role")?)?,
        })
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_before_them() {
        let analyst = CurrentUser {
            name: "a".into(),
            role: Role::Analyst,
        };
        assert!(analyst.can(Role::Viewer) && analyst.can(Role::Analyst));
        assert!(!analyst.can(Role::Admin));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
