//! Sessions after an OpenID Connect sign-in: who they are, kept in memory by the SHA-256 of
//! their cookie's value (the value itself is never stored, so a memory dump or a log line of
//! the table names no usable cookie).
//!
//! A session ends at its idle timeout (no request for `--session-idle`), at its absolute
//! lifetime (`--session-lifetime` after sign-in, however active), at sign-out, or when the table
//! is full and it is the least recently used ([`Sessions::insert`]). Every
//! [`ROTATE_EVERY`] of use it gets a new id (a new cookie); the old id is honoured for
//! [`GRACE`] more, so requests already in flight with the old cookie do not fail.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::Mutex;

use crate::roles::Identity;

/// A session in use gets a new id this often.
pub const ROTATE_EVERY: Duration = Duration::from_secs(15 * 60);
/// How long a rotated-out id still works.
pub const GRACE: Duration = Duration::from_secs(30);

type Key = [u8; 32];

fn key_of(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

/// A new session id: 256 random bits, base64url.
fn new_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Clone)]
struct Session {
    identity: Identity,
    /// Sign-in: the absolute lifetime counts from here.
    created: Instant,
    last_used: Instant,
    /// When this id was issued (rotation counts from here).
    issued: Instant,
    /// Rotated out: the id that replaced it, and until when this one is still honoured.
    replaced: Option<(Key, Instant)>,
    /// The id this one replaced (revoked with it at sign-out).
    predecessor: Option<Key>,
}

/// The limits of [`Sessions`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: Duration,
    pub lifetime: Duration,
    pub max: usize,
}

/// What a cookie is worth.
#[derive(Debug)]
pub struct Found {
    pub identity: Identity,
    /// A new id to set as the cookie (the session was rotated).
    pub rotated: Option<String>,
}

/// Why a cookie lets no one in. Deliberately vague towards the client: an unknown and a
/// revoked id look alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ended {
    #[error("the session is unknown or was signed out")]
    Unknown,
    #[error("the session expired after being idle")]
    Idle,
    #[error("the session reached its maximum lifetime")]
    Lifetime,
}

/// The sessions of signed-in users.
#[derive(Debug)]
pub struct Sessions {
    limits: Limits,
    table: Mutex<HashMap<Key, Session>>,
}

impl Sessions {
    pub fn new(limits: Limits) -> Sessions {
        Sessions {
            limits,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session for `identity`; its id (the cookie's value). When the table is full,
    /// expired sessions go first, then the least recently used one.
    pub fn insert(&self, identity: Identity) -> String {
        let now = Instant::now();
        let id = new_id();
        let mut table = self.lock();
        if table.len() >= self.limits.max {
            table.retain(|_, s| self.alive(s, now).is_ok());
        }
        while table.len() >= self.limits.max {
            let Some(oldest) = table
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            table.remove(&oldest);
        }
        table.insert(
            key_of(&id),
            Session {
                identity,
                created: now,
                last_used: now,
                issued: now,
                replaced: None,
                predecessor: None,
            },
        );
        id
    }

    fn alive(&self, s: &Session, now: Instant) -> Result<(), Ended> {
        if now.duration_since(s.created) >= self.limits.lifetime {
            return Err(Ended::Lifetime);
        }
        if now.duration_since(s.last_used) >= self.limits.idle {
            return Err(Ended::Idle);
        }
        if s.replaced.is_some_and(|(_, until)| now >= until) {
            return Err(Ended::Unknown);
        }
        Ok(())
    }

    /// The identity of session `id`, marking it used; rotates it when due.
    pub fn lookup(&self, id: &str) -> Result<Found, Ended> {
        let now = Instant::now();
        let key = key_of(id);
        let mut table = self.lock();
        let s = table.get_mut(&key).ok_or(Ended::Unknown)?;
        if let Err(e) = self.alive(s, now) {
            table.remove(&key);
            return Err(e);
        }
        s.last_used = now;
        let identity = s.identity.clone();
        if s.replaced.is_some() || now.duration_since(s.issued) < ROTATE_EVERY {
            return Ok(Found {
                identity,
                rotated: None,
            });
        }
        let new = new_id();
        let new_key = key_of(&new);
        s.replaced = Some((new_key, now + GRACE));
        let successor = Session {
            issued: now,
            replaced: None,
            predecessor: Some(key),
            ..s.clone()
        };
        table.insert(new_key, successor);
        Ok(Found {
            identity,
            rotated: Some(new),
        })
    }

    /// Ends session `id` and the ids it replaced or was replaced by; whether it existed.
    pub fn revoke(&self, id: &str) -> bool {
        let mut table = self.lock();
        let Some(s) = table.remove(&key_of(id)) else {
            return false;
        };
        let mut forward = s.replaced.map(|(k, _)| k);
        while let Some(k) = forward {
            forward = table.remove(&k).and_then(|s| s.replaced.map(|(k, _)| k));
        }
        let mut back = s.predecessor;
        while let Some(k) = back {
            back = table.remove(&k).and_then(|s| s.predecessor);
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions in the table (live or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::{Role, Via};

    fn limits() -> Limits {
        Limits {
            idle: Duration::from_secs(3600),
            lifetime: Duration::from_secs(7200),
            max: 3,
        }
    }

    fn alice() -> Identity {
        Identity::with_role("alice@example.com", Role::Admin, Via::Session)
    }

    #[test]
    fn a_session_is_found_by_its_id_and_revoked() {
        let s = Sessions::new(limits());
        let id = s.insert(alice());
        assert_eq!(s.lookup(&id).unwrap().identity, alice());
        assert_eq!(s.lookup("nope").unwrap_err(), Ended::Unknown);
        assert!(s.revoke(&id));
        assert_eq!(s.lookup(&id).unwrap_err(), Ended::Unknown);
    }

    #[test]
    fn the_table_is_capped_least_recently_used_first() {
        let s = Sessions::new(limits());
        let a = s.insert(alice());
        let b = s.insert(alice());
        let c = s.insert(alice());
        s.lookup(&a).unwrap();
        let d = s.insert(alice());
        assert_eq!(s.len(), 3);
        assert!(s.lookup(&b).is_err(), "b was the least recently used");
        for id in [a, c, d] {
            assert!(s.lookup(&id).is_ok());
        }
    }

    #[test]
    fn idle_and_lifetime_end_a_session() {
        let s = Sessions::new(Limits {
            idle: Duration::from_millis(50),
            lifetime: Duration::from_secs(60),
            max: 10,
        });
        let id = s.insert(alice());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(s.lookup(&id).unwrap_err(), Ended::Idle);
        let s = Sessions::new(Limits {
            idle: Duration::from_secs(60),
            lifetime: Duration::from_millis(50),
            max: 10,
        });
        let id = s.insert(alice());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(s.lookup(&id).unwrap_err(), Ended::Lifetime);
    }

    #[test]
    fn a_rotated_session_keeps_the_old_id_for_a_grace_and_revokes_both() {
        let s = Sessions::new(limits());
        let old = s.insert(alice());
        // Pretend it was issued long ago.
        s.lock().get_mut(&key_of(&old)).unwrap().issued -= ROTATE_EVERY;
        let new = s.lookup(&old).unwrap().rotated.expect("rotated");
        assert_ne!(new, old);
        assert!(
            s.lookup(&old).unwrap().rotated.is_none(),
            "within the grace"
        );
        assert!(s.lookup(&new).unwrap().rotated.is_none());
        // Past the grace, the old id is refused.
        s.lock()
            .get_mut(&key_of(&old))
            .unwrap()
            .replaced
            .as_mut()
            .unwrap()
            .1 = Instant::now();
        assert_eq!(s.lookup(&old).unwrap_err(), Ended::Unknown);
        assert!(s.lookup(&new).is_ok());
        // Signing out with the new id ends the old too (and vice versa).
        let old2 = s.insert(alice());
        s.lock().get_mut(&key_of(&old2)).unwrap().issued -= ROTATE_EVERY;
        let new2 = s.lookup(&old2).unwrap().rotated.unwrap();
        assert!(s.revoke(&new2));
        assert!(s.lookup(&old2).is_err() && s.lookup(&new2).is_err());
        let old3 = s.insert(alice());
        s.lock().get_mut(&key_of(&old3)).unwrap().issued -= ROTATE_EVERY;
        let new3 = s.lookup(&old3).unwrap().rotated.unwrap();
        assert!(s.revoke(&old3));
        assert!(s.lookup(&new3).is_err());
    }
}
