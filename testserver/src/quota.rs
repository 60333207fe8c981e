//! The free transfer quota (`MEGA-FILES-TRANSFERS.md` §3): bytes downloaded per client
//! address in six hourly buckets (a sliding six-hour window). Off unless the server is started
//! with `--transfer-quota BYTES`. Over it, `g` answers `e: -17` with `tl` (the seconds until
//! the oldest bucket leaves the window) and no URL, and a download URL answers HTTP 509 with
//! `X-MEGA-Time-Left`; `uq` reports the buckets (`tah`, `bt`, `tar`). Uploads are never
//! limited by it. Kept in memory: a restart forgets it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Buckets in the window. Each is an hour at MEGA (`--transfer-bucket` may shorten it).
const BUCKETS: u64 = 6;

/// Bytes served per client address, by hour.
#[derive(Default)]
pub(crate) struct TransferMeter {
    /// 0: no quota.
    quota: u64,
    /// Seconds per bucket (an hour).
    bucket: u64,
    /// address → (hour number, bytes) for the hours in the window, oldest first.
    used: Mutex<HashMap<IpAddr, Vec<(u64, u64)>>>,
}

impl TransferMeter {
    pub(crate) fn new(quota: u64, bucket: u64) -> Self {
        TransferMeter {
            quota,
            bucket: bucket.max(1),
            used: Mutex::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.quota > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Vec<(u64, u64)>>> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The buckets of `ip` still in the window at `now` (Unix seconds).
    fn window(&self, ip: IpAddr, now: u64) -> Vec<(u64, u64)> {
        let hour = now / self.bucket;
        let mut map = self.lock();
        let v = map.entry(ip).or_default();
        v.retain(|(h, _)| h + BUCKETS > hour);
        v.clone()
    }

    /// Seconds until `ip` may download again, if it is over the quota now.
    pub(crate) fn over(&self, ip: IpAddr, now: u64) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let w = self.window(ip, now);
        let mut total: u64 = w.iter().map(|(_, b)| b).sum();
        if total < self.quota {
            return None;
        }
        // Wait until enough of the oldest buckets left the window to be under it again.
        for (h, b) in &w {
            total -= b;
            if total < self.quota {
                return Some(((h + BUCKETS) * self.bucket).saturating_sub(now).max(1));
            }
        }
        Some(BUCKETS * self.bucket)
    }

    /// Counts `bytes` served to `ip`.
    pub(crate) fn record(&self, ip: IpAddr, bytes: u64, now: u64) {
        if !self.enabled() || bytes == 0 {
            return;
        }
        let hour = now / self.bucket;
        let mut map = self.lock();
        let v = map.entry(ip).or_default();
        match v.last_mut() {
            Some((h, b)) if *h == hour => *b += bytes,
            _ => v.push((hour, bytes)),
        }
    }

    /// `uq`'s fields for `ip`: `tah` (six hourly buckets, oldest first), `bt` (seconds into
    /// the current bucket), `tar` (reserved: none).
    pub(crate) fn uq_fields(&self, ip: IpAddr, now: u64) -> serde_json::Value {
        let hour = now / self.bucket;
        let w = self.window(ip, now);
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
}
