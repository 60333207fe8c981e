//! What keeps one client from harming the others: the [`Limits`] and their defaults, the
//! reply cache that makes retries idempotent (keyed by everything that determines a reply,
//! bounded in bytes, dropped for a session at logout), login throttling, the unguessable
//! one-use wait URLs of the event channel, constant-time comparisons, and the sweep that
//! removes expired sessions, URLs and upload slots.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::State;

/// Bounds on what one client can make the server do. Each limit answers with a clear MEGA
/// error code (see the README's mega-testserver section).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Commands in one `/cs` request; a longer batch answers `-6` (ETOOMANY).
    pub max_commands: usize,
    /// Bytes of one `/cs` reply; commands that would go past it are not run and answer `-6`.
    pub max_reply_bytes: usize,
    /// Bytes of replies kept for idempotent retries (oldest dropped first). A reply larger
    /// than a quarter of this is not kept.
    pub reply_cache_bytes: usize,
    /// Upload slots an account may have open at once (`u` then answers `-6`); their sizes
    /// count against the quota.
    pub max_open_uploads: i64,
    /// Failed logins (wrong password or 2FA code) within `login_window` before `us` answers
    /// `-4` (ERATELIMIT) for that account, or for that client address (×3).
    pub login_failures: usize,
    pub login_window: Duration,
    /// A session unused for this long ends (`-15`).
    pub session_idle: Duration,
    /// Download URLs stop working this long after they were issued (and when what issued
    /// them — a session, a link — ends).
    pub url_lifetime: Duration,
    /// An unfinished upload URL keeps what it received (across restarts too) and takes more
    /// for this long after its last activity, as MEGA's storage servers do for 48 hours;
    /// then it answers `-8` and its data is removed.
    pub upload_lifetime: Duration,
    /// Action packets kept per account. A client whose cursor points before the oldest one
    /// kept is told `-6` on `sc` ("too many pending updates") and must fetch the tree again,
    /// as the real service does for a client that was away too long.
    pub event_log: i64,
    /// Bytes a client address may download in six hours (MEGA's free transfer quota);
    /// 0: no limit.
    pub transfer_quota: u64,
    /// Length of one of the quota's six buckets (MEGA's: an hour); shorter makes a test
    /// wait less for the quota to come back.
    pub transfer_bucket: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_commands: 500,
            max_reply_bytes: 512 << 20,
            reply_cache_bytes: 64 << 20,
            max_open_uploads: 256,
            login_failures: 10,
            login_window: Duration::from_secs(600),
            session_idle: Duration::from_secs(30 * 24 * 3600),
            url_lifetime: Duration::from_secs(12 * 3600),
            upload_lifetime: Duration::from_secs(48 * 3600),
            event_log: 100_000,
            transfer_quota: 0,
            transfer_bucket: Duration::from_secs(3600),
        }
    }
}

/// Equality that takes the same time wherever the inputs differ (lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What determines a `/cs` reply: the session (hash), the folder link, the request id and
/// the body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReplyKey {
    pub session: String,
    pub link: Option<String>,
    pub id: String,
    pub body: [u8; 32],
}

impl ReplyKey {
    pub fn new(session: &str, link: Option<&str>, id: &str, body: &[u8]) -> Self {
        ReplyKey {
            session: session.to_string(),
            link: link.map(str::to_string),
            id: id.to_string(),
            body: Sha256::digest(body).into(),
        }
    }
}

/// Replies already sent to sessions, so that a retried request is answered from here
/// instead of running twice. Bounded in bytes.
pub(crate) struct ReplyCache {
    map: HashMap<ReplyKey, Vec<u8>>,
    order: VecDeque<ReplyKey>,
    bytes: usize,
    capacity: usize,
}

impl ReplyCache {
    pub fn new(capacity: usize) -> Self {
        ReplyCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            capacity,
        }
    }

    pub fn get(&self, k: &ReplyKey) -> Option<Vec<u8>> {
        self.map.get(k).cloned()
    }

    pub fn put(&mut self, k: ReplyKey, v: Vec<u8>) {
        if v.len() > self.capacity / 4 || self.map.contains_key(&k) {
            return;
        }
        self.bytes += v.len();
        self.map.insert(k.clone(), v);
        self.order.push_back(k);
        while self.bytes > self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.map.remove(&old) {
                self.bytes -= v.len();
            }
        }
    }

    /// Forgets every reply of a session (at logout).
    pub fn drop_session(&mut self, session: &str) {
        let map = &mut self.map;
        let mut freed = 0;
        self.order.retain(|k| {
            if k.session == session {
                if let Some(v) = map.remove(k) {
                    freed += v.len();
                }
                false
            } else {
                true
            }
        });
        self.bytes -= freed;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Failed logins per account and per client address, in a sliding window.
#[derive(Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    fn keys(email: &str, peer: Option<IpAddr>) -> [(String, usize); 2] {
        [
            (format!("account:{email}"), 1),
            (
                format!(
                    "address:{}",
                    peer.map(|p| p.to_string()).unwrap_or_default()
                ),
                3,
            ),
        ]
    }

    /// Whether logins for `email` from `peer` are refused for now.
    pub fn blocked(&self, email: &str, peer: Option<IpAddr>, limits: &Limits) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        Self::keys(email, peer).iter().any(|(k, factor)| {
            f.get_mut(k).is_some_and(|q| {
                while q.front().is_some_and(|t| now - *t > limits.login_window) {
                    q.pop_front();
                }
                q.len() >= limits.login_failures * factor
            })
        })
    }

    pub fn failed(&self, email: &str, peer: Option<IpAddr>, limits: &Limits) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for (k, factor) in Self::keys(email, peer) {
            let q = f.entry(k).or_default();
            q.push_back(now);
            // Only the window's worth matters.
            while q.len() > limits.login_failures * factor {
                q.pop_front();
            }
        }
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn succeeded(&self, email: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(&format!("account:{email}"));
    }
}

/// A wait URL handed out by `sc`: for whom, and from which cursor.
#[derive(Debug, Clone)]
pub(crate) struct Wait {
    pub user: String,
    pub session: String,
    pub sn: i64,
    issued: Instant,
}

/// Wait URLs by their unguessable token; each is used once.
#[derive(Default)]
pub(crate) struct WaitTokens {
    map: Mutex<HashMap<String, Wait>>,
}

/// Wait URLs kept at most; the oldest go first.
const MAX_WAITS: usize = 10_000;

impl WaitTokens {
    pub fn issue(&self, user: &str, session: &str, sn: i64, max_age: Duration) -> String {
        let token = crate::crypto::b64e(&crate::crypto::random_bytes::<18>());
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        m.retain(|_, w| now - w.issued < max_age);
        if m.len() >= MAX_WAITS {
            if let Some(oldest) = m
                .iter()
                .min_by_key(|(_, w)| w.issued)
                .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(
            token.clone(),
            Wait {
                user: user.to_string(),
                session: session.to_string(),
                sn,
                issued: now,
            },
        );
        token
    }

    pub fn take(&self, token: &str) -> Option<Wait> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token)
    }
}

/// Removes idle sessions, expired download URLs and stale upload slots; returns how many
/// upload slots went.
pub(crate) fn sweep(state: &State) -> usize {
    let limits = &state.config.limits;
    let now = crate::store::now();
    let idle = limits.session_idle.as_secs() as i64;
    let lifetime = limits.url_lifetime.as_secs() as i64;
    {
        let db = state.store.lock();
        let _ = db.execute(
            "DELETE FROM login_sessions WHERE last_used < ?1",
            [now - idle],
        );
        let _ = db.execute("DELETE FROM downloads WHERE created < ?1", [now - lifetime]);
        crate::fileattrs::sweep(&db, lifetime, limits.upload_lifetime.as_secs() as i64);
    }
    state
        .store
        .remove_stale_uploads(limits.upload_lifetime.as_secs() as i64)
        .unwrap_or_else(|e| {
            tracing::warn!("removing stale uploads: {e}");
            0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_cache_is_bounded_in_bytes_and_forgets_sessions() {
        let mut c = ReplyCache::new(100);
        let k = |s: &str, id: &str| ReplyKey::new(s, None, id, b"[]");
        c.put(k("a", "1"), vec![0; 20]);
        c.put(k("a", "2"), vec![0; 20]);
        c.put(k("b", "1"), vec![0; 20]);
        assert_eq!(c.bytes(), 60);
        c.put(k("b", "big"), vec![0; 30]);
        assert!(c.get(&k("b", "big")).is_none(), "over a quarter: not kept");
        for i in 0..10 {
            c.put(k("c", &i.to_string()), vec![0; 20]);
        }
        assert!(c.bytes() <= 100);
        assert!(c.get(&k("a", "1")).is_none(), "the oldest went first");
        c.drop_session("c");
        assert_eq!(c.bytes(), 0);
        assert_ne!(
            ReplyKey::new("", Some("L1"), "1", b"x"),
            ReplyKey::new("", Some("L2"), "1", b"x"),
            "the folder link is part of the key"
        );
    }

    #[test]
    fn throttling_per_account_and_address() {
        let limits = Limits {
            login_failures: 3,
            login_window: Duration::from_secs(60),
            ..Default::default()
        };
        let t = Throttle::default();
        let ip: Option<IpAddr> = "127.0.0.1".parse().ok();
        for _ in 0..3 {
            assert!(!t.blocked("a@x", ip, &limits));
            t.failed("a@x", ip, &limits);
        }
        assert!(t.blocked("a@x", ip, &limits));
        assert!(!t.blocked("b@x", ip, &limits), "another account, below 3x");
        for _ in 0..6 {
            t.failed("c@x", ip, &limits);
        }
        assert!(t.blocked("d@x", ip, &limits), "the address is blocked at 9");
        t.succeeded("a@x");
        assert!(
            t.blocked("a@x", ip, &limits),
            "still blocked by the address"
        );
        assert!(!t.blocked("a@x", "10.0.0.1".parse().ok(), &limits));
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
