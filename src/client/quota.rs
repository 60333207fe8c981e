//! [`QuotaPause`]: downloads held back by MEGA's transfer quota until it comes back, while
//! the rest of a run goes on (`MEGA-FILES-TRANSFERS.md` §3).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Error;

/// MEGA's transfer quota as a run of transfers met it: one clock for all of them, said once
/// per window. Downloads wait for it (or, when the run may not wait, fail with the quota
/// error); uploads are never held back by it.
#[derive(Debug)]
pub struct QuotaPause {
    until: Mutex<Option<Instant>>,
    /// Wait for the quota to come back (else a download that meets it fails).
    pub wait: bool,
}

impl QuotaPause {
    pub fn new(wait: bool) -> Self {
        QuotaPause {
            until: Mutex::new(None),
            wait,
        }
    }

    /// The quota is used up for `secs` more seconds; true the first time in a window (then
    /// it is logged, unless `quiet`: a caller that shows it its own way).
    pub fn met(&self, secs: u64, quiet: bool) -> bool {
        let now = Instant::now();
        let until = now + Duration::from_secs(secs.max(1));
        let mut u = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = u.is_none_or(|t| t <= now);
        if fresh || u.is_some_and(|t| t < until) {
            *u = Some(until);
        }
        if fresh && !quiet {
            tracing::warn!(
                "MEGA's transfer quota is used up until {}: downloads {}",
                crate::local::time::fmt_time_secs(crate::local::time::now() + secs as i64),
                if self.wait {
                    "wait for it, the rest goes on"
                } else {
                    "stop"
                }
            );
        }
        fresh
    }

    /// Until when downloads are held back, if they are now.
    pub fn until(&self) -> Option<Instant> {
        let u = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        u.filter(|t| *t > Instant::now())
    }

    /// Seconds until the quota comes back (0: it is there).
    pub fn left(&self) -> u64 {
        self.until().map_or(0, |t| {
            let d = t.saturating_duration_since(Instant::now());
            d.as_secs() + u64::from(d.subsec_nanos() > 0)
        })
    }

    /// Runs a download, first waiting while the quota is used up and again whenever it
    /// runs out (the download resumes where it stopped); without `wait`, the quota error.
    pub async fn run<T, F, Fut>(&self, mut f: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        loop {
            if let Some(t) = self.until() {
                if !self.wait {
                    return Err(Error::TransferQuota { wait: self.left() });
                }
                tokio::time::sleep_until(t.into()).await;
            }
            match f().await {
                Err(Error::TransferQuota { wait }) => {
                    self.met(wait, false);
                }
                r => return r,
            }
        }
    }
}
