//! Browser sessions, in memory: a random 32-byte id in the `churn_session` cookie, looked up by
//! its SHA-256. A session ends after 2 hours idle, after its lifetime (`--session-hours`), at
//! sign-out, and when its user is removed or gets a new password. A restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

use super::users::User;
use super::{digest, Secret};

pub const IDLE: TimeDelta = TimeDelta::hours(2);
/// Sessions kept at most; past it the oldest is ended (each is a few hundred bytes).
pub const MAX_SESSIONS: usize = 10_000;
/// Sessions kept per user at most; past it that user's oldest is ended. So one account signing
/// in over and over ends only its own sessions, never everyone's (100 users would be needed to
/// reach `MAX_SESSIONS`).
pub const MAX_PER_USER: usize = 100;

#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    /// The digest of the user's password hash at sign-in: a new password changes it.
    fingerprint: String,
    created: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

impl Session {
    /// Whether `user` is still the one this session was started for.
    pub fn belongs_to(&self, user: &User) -> bool {
        user.name == self.user && digest(&user.password_hash) == self.fingerprint
    }
}

pub struct Sessions {
    by_digest: Mutex<HashMap<String, Session>>,
    lifetime: TimeDelta,
    cap: usize,
}

impl Sessions {
    pub fn new(lifetime: TimeDelta, cap: usize) -> Sessions {
        Sessions {
            by_digest: Mutex::new(HashMap::new()),
            lifetime,
            cap: cap.max(1),
        }
    }

    fn expired(&self, session: &Session, now: DateTime<Utc>) -> bool {
        now - session.last_seen >= IDLE || now - session.created >= self.lifetime
    }

    /// A new session for `user`; its id, for the cookie.
    pub fn start(&self, user: &User, now: DateTime<Utc>) -> Secret {
        let id = Secret::random_hex("");
        let mut sessions = self.by_digest.lock().expect("sessions lock");
        let theirs = sessions.values().filter(|s| s.user == user.name).count();
        if sessions.len() >= self.cap || theirs >= MAX_PER_USER {
            sessions.retain(|_, s| !self.expired(s, now));
        }
        while sessions.values().filter(|s| s.user == user.name).count() >= MAX_PER_USER {
            end_oldest(&mut sessions, |s| s.user == user.name);
        }
        while sessions.len() >= self.cap && end_oldest(&mut sessions, |_| true) {}
        sessions.insert(
            digest(id.expose()),
            Session {
                user: user.name.clone(),
                fingerprint: digest(&user.password_hash),
                created: now,
                last_seen: now,
            },
        );
        id
    }

    /// The live session with this id, marked as seen now; an expired one is ended.
    pub fn resume(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let key = digest(id);
        let mut sessions = self.by_digest.lock().expect("sessions lock");
        let session = sessions.get_mut(&key)?;
        if self.expired(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn end(&self, id: &str) {
        self.by_digest
            .lock()
            .expect("sessions lock")
            .remove(&digest(id));
    }

    pub fn len(&self) -> usize {
        self.by_digest.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ends the oldest session `which` picks; false when there is none.
fn end_oldest(sessions: &mut HashMap<String, Session>, which: impl Fn(&Session) -> bool) -> bool {
    let oldest = sessions
        .iter()
        .filter(|(_, s)| which(s))
        .min_by_key(|(_, s)| s.created)
        .map(|(key, _)| key.clone());
    oldest.is_some_and(|key| sessions.remove(&key).is_some())
}

#[cfg(test)]
mod tests {
    use app::Role;

    use super::*;

    fn user(name: &str, hash: &str) -> User {
        User {
            name: name.into(),
            role: Role::Viewer,
            password_hash: hash.into(),
            created: Utc::now(),
        }
    }

    #[test]
    fn a_session_ends_after_two_idle_hours_or_its_lifetime() {
        let sessions = Sessions::new(TimeDelta::hours(12), 10);
        let t0 = Utc::now();
        let ann = user("ann", "h1");
        let id = sessions.start(&ann, t0);
        let mut t = t0;
        // Busy: seen every hour, so never idle, until the lifetime is up.
        for _ in 0..11 {
            t += TimeDelta::hours(1);
            assert!(sessions.resume(id.expose(), t).is_some(), "at {}", t - t0);
        }
        assert!(sessions
            .resume(id.expose(), t0 + TimeDelta::hours(12))
            .is_none());
        assert!(sessions.is_empty(), "an expired session is dropped");

        let idle = sessions.start(&ann, t0);
        let almost = t0 + IDLE - TimeDelta::seconds(1);
        assert!(sessions.resume(idle.expose(), almost).is_some());
        assert!(sessions.resume(idle.expose(), almost + IDLE).is_none());
        assert!(sessions.resume("not a session", t0).is_none());
    }

    #[test]
    fn sessions_are_capped_by_ending_the_oldest() {
        let sessions = Sessions::new(TimeDelta::hours(12), 3);
        let t0 = Utc::now();
        let ann = user("ann", "h1");
        let ids: Vec<_> = (0..4)
            .map(|i| sessions.start(&ann, t0 + TimeDelta::seconds(i)))
            .collect();
        assert_eq!(sessions.len(), 3);
        let now = t0 + TimeDelta::seconds(5);
        assert!(
            sessions.resume(ids[0].expose(), now).is_none(),
            "the oldest went"
        );
        assert!(ids[1..]
            .iter()
            .all(|id| sessions.resume(id.expose(), now).is_some()));
    }

    #[test]
    fn one_user_signing_in_over_and_over_ends_only_their_own_sessions() {
        let sessions = Sessions::new(TimeDelta::hours(12), MAX_SESSIONS);
        let t0 = Utc::now();
        let others: Vec<_> = (0..50)
            .map(|i| sessions.start(&user(&format!("u{i}"), "h"), t0))
            .collect();
        let mallory = user("mallory", "h");
        let mut last = None;
        for i in 0..(MAX_SESSIONS as i64 + 500) {
            last = Some(sessions.start(&mallory, t0 + TimeDelta::milliseconds(i)));
        }
        let now = t0 + TimeDelta::seconds(20);
        assert_eq!(sessions.len(), 50 + MAX_PER_USER);
        assert!(others
            .iter()
            .all(|id| sessions.resume(id.expose(), now).is_some()));
        assert!(sessions.resume(last.unwrap().expose(), now).is_some());
    }

    #[test]
    fn a_session_belongs_to_its_user_until_the_password_changes() {
        let sessions = Sessions::new(TimeDelta::hours(12), 3);
        let now = Utc::now();
        let id = sessions.start(&user("ann", "h1"), now);
        let session = sessions.resume(id.expose(), now).unwrap();
        assert!(session.belongs_to(&user("ann", "h1")));
        assert!(!session.belongs_to(&user("ann", "h2")), "new password");
        assert!(!session.belongs_to(&user("bob", "h1")));
        sessions.end(id.expose());
        assert!(sessions.resume(id.expose(), now).is_none());
    }
}
