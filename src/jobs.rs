//! Running independent jobs a bounded number at a time (megacmd's transfers, one-way sync):
//! every job runs even when others fail, and the failures come back in completion order.
//! [`QuotaPause`]: downloads held back by MEGA's transfer quota until it comes back, while
//! the rest goes on.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::error::Error;

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

/// Runs `f` on every job, `parallel` at a time; returns the errors.
pub async fn run<T, E, F, Fut>(parallel: usize, jobs: Vec<T>, f: F) -> Vec<E>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    futures::stream::iter(jobs)
        .map(f)
        .buffer_unordered(parallel.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn every_job_runs_and_failures_are_returned() {
        let seen = std::sync::Mutex::new(Vec::new());
        let errors = super::run(2, (0..10).collect(), |i: u32| {
            let seen = &seen;
            async move {
                seen.lock().unwrap().push(i);
                if i % 3 == 0 {
                    Err(i)
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(seen.lock().unwrap().len(), 10);
        let mut errors = errors;
        errors.sort();
        assert_eq!(errors, vec![0, 3, 6, 9]);
    }
}
