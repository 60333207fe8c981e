//! The transfer quota (`MEGA-FILES-TRANSFERS.md` §3): bytes downloaded in six hourly buckets
//! (a sliding six-hour window), per client address for free accounts (`--transfer-quota
//! BYTES`, off by default) and per account for an account given its own allowance
//! (`useradd --transfer-quota BYTES`, as a paid plan has; its downloads do not count against
//! the address). Over it, `g` answers `e: -17` with `tl` (the seconds until the oldest bucket
//! leaves the window) and no URL, and a download URL answers HTTP 509 with
//! `X-MEGA-Time-Left`; `uq` reports the address's buckets (`tah`, `bt`, `tar`) or the
//! account's allowance and use (`mxfer`, `caxfer`). Uploads are never limited by it. Kept in
//! memory: a restart forgets it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Buckets in the window. Each is an hour at MEGA (`--transfer-bucket` may shorten it).
const BUCKETS: u64 = 6;

/// Download URLs remembered with the account they count against (a bound, not a leak).
const MAX_BOUND_URLS: usize = 100_000;

/// Whose downloads a bucket counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Addr(IpAddr),
    Account(String),
}

/// Bytes served per client address or account, by hour.
#[derive(Default)]
pub(crate) struct TransferMeter {
    /// Per address; 0: no quota.
    quota: u64,
    /// Seconds per bucket (an hour).
    bucket: u64,
    /// who → (bucket number, bytes) for the buckets in the window, oldest first.
    used: Mutex<HashMap<Who, Vec<(u64, u64)>>>,
    /// Download URL id → (account, its allowance), for URLs issued to accounts that have one.
    urls: Mutex<HashMap<String, (String, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TransferMeter {
    pub(crate) fn new(quota: u64, bucket: u64) -> Self {
        TransferMeter {
            quota,
            bucket: bucket.max(1),
            ..Default::default()
        }
    }

    /// Whether addresses are limited.
    pub(crate) fn enabled(&self) -> bool {
        self.quota > 0
    }

    /// The buckets of `who` still in the window at `now` (Unix seconds).
    fn window(&self, who: &Who, now: u64) -> Vec<(u64, u64)> {
        let hour = now / self.bucket;
        let mut map = lock(&self.used);
        let v = map.entry(who.clone()).or_default();
        v.retain(|(h, _)| h + BUCKETS > hour);
        v.clone()
    }

    /// Seconds until `who` may download again, if it is over `quota` now (0: no limit).
    fn over_who(&self, who: &Who, quota: u64, now: u64) -> Option<u64> {
        if quota == 0 {
            return None;
        }
        let w = self.window(who, now);
        let mut total: u64 = w.iter().map(|(_, b)| b).sum();
        if total < quota {
            return None;
        }
        // Wait until enough of the oldest buckets left the window to be under it again.
        for (h, b) in &w {
            total -= b;
            if total < quota {
                return Some(((h + BUCKETS) * self.bucket).saturating_sub(now).max(1));
            }
        }
        Some(BUCKETS * self.bucket)
    }

    fn record_who(&self, who: Who, bytes: u64, now: u64) {
        if bytes == 0 {
            return;
        }
        let hour = now / self.bucket;
        let mut map = lock(&self.used);
        let v = map.entry(who).or_default();
        match v.last_mut() {
            Some((h, b)) if *h == hour => *b += bytes,
            _ => v.push((hour, bytes)),
        }
    }

    /// Seconds until `ip` may download again, if it is over the quota now.
    pub(crate) fn over(&self, ip: IpAddr, now: u64) -> Option<u64> {
        self.over_who(&Who::Addr(ip), self.quota, now)
    }

    /// Counts `bytes` served to `ip`.
    pub(crate) fn record(&self, ip: IpAddr, bytes: u64, now: u64) {
        if self.enabled() {
            self.record_who(Who::Addr(ip), bytes, now);
        }
    }

    /// Seconds until `account` may download again, if it used its `allowance` up.
    pub(crate) fn over_account(&self, account: &str, allowance: u64, now: u64) -> Option<u64> {
        self.over_who(&Who::Account(account.to_string()), allowance, now)
    }

    /// Counts `bytes` served to `account`.
    pub(crate) fn record_account(&self, account: &str, bytes: u64, now: u64) {
        self.record_who(Who::Account(account.to_string()), bytes, now);
    }

    /// What `account` downloaded in the window.
    pub(crate) fn account_used(&self, account: &str, now: u64) -> u64 {
        let w = self.window(&Who::Account(account.to_string()), now);
        w.iter().map(|(_, b)| b).sum()
    }

    /// Download URL `id` counts against `account`'s `allowance`.
    pub(crate) fn bind(&self, id: &str, account: &str, allowance: u64) {
        let mut urls = lock(&self.urls);
        if urls.len() >= MAX_BOUND_URLS {
            urls.clear();
        }
        urls.insert(id.to_string(), (account.to_string(), allowance));
    }

    /// The account (and its allowance) download URL `id` counts against, if any.
    pub(crate) fn bound(&self, id: &str) -> Option<(String, u64)> {
        lock(&self.urls).get(id).cloned()
    }

    /// `uq`'s fields for `ip`: `tah` (six hourly buckets, oldest first), `bt` (seconds into
    /// the current bucket), `tar` (reserved: none).
    pub(crate) fn uq_fields(&self, ip: IpAddr, now: u64) -> serde_json::Value {
        let hour = now / self.bucket;
        let w = self.window(&Who::Addr(ip), now);
        let tah: Vec<u64> = (0..BUCKETS)
            .map(|i| {
                let h = hour + 1 + i - BUCKETS;
                w.iter().find(|(x, _)| *x == h).map_or(0, |(_, b)| *b)
            })
            .collect();
        serde_json::json!({"tah": tah, "bt": now % self.bucket, "tar": 0})
    }
}

#[cfg(test)]
mod tests {
    const HOUR: u64 = 3600;
    use super::*;

    #[test]
    fn a_sliding_six_hour_window_per_address() {
        let m = TransferMeter::new(1000, HOUR);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = 100 * HOUR + 10;
        m.record(a, 600, t0);
        assert_eq!(m.over(a, t0), None);
        m.record(a, 500, t0 + HOUR);
        // Over: the first bucket (600) leaves the window at hour 106.
        assert_eq!(m.over(a, t0 + HOUR), Some(106 * HOUR - (t0 + HOUR)));
        assert_eq!(m.over(b, t0 + HOUR), None, "per address");
        let f = m.uq_fields(a, t0 + HOUR);
        assert_eq!(f["tah"], serde_json::json!([0, 0, 0, 0, 600, 500]));
        assert_eq!(f["bt"], 10);
        assert_eq!(
            m.over(a, 106 * HOUR),
            None,
            "the first hour left the window"
        );
        assert_eq!(TransferMeter::new(0, HOUR).over(a, t0), None, "off");
    }

    #[test]
    fn an_account_allowance_is_its_own() {
        let m = TransferMeter::new(0, HOUR);
        let t0 = 100 * HOUR;
        m.record_account("U1", 900, t0);
        assert_eq!(m.over_account("U1", 1000, t0), None);
        m.record_account("U1", 200, t0);
        assert_eq!(m.over_account("U1", 1000, t0), Some(6 * HOUR));
        assert_eq!(m.over_account("U2", 1000, t0), None);
        assert_eq!(m.account_used("U1", t0), 1100);
        m.bind("dl1", "U1", 1000);
        assert_eq!(m.bound("dl1"), Some(("U1".into(), 1000)));
        assert_eq!(m.bound("dl2"), None);
    }
}
