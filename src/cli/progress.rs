//! What megacmd shows while it works: a progress bar (bytes, rate, ETA) only when stderr is a
//! terminal, a line per file with `--verbose 1`, and a summary at the end (on stderr, or as
//! JSON on stdout).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::exit::CliError;
use super::Ctx;
use crate::transfer::Progress;

/// `1.5 MiB` style sizes.
pub(super) fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1 h 02 min`, `5 min 03 s`, `42 s`.
pub(super) fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}

/// Byte and file counters, and the progress bar (only on a terminal).
pub(super) struct Transfers {
    pub(super) bar: indicatif::ProgressBar,
    files: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    verbose: u8,
    json: bool,
    /// The transfer quota as these transfers met it (reported once per window, however
    /// many downloads meet it).
    quota: crate::client::quota::QuotaPause,
}

impl Transfers {
    pub(super) fn new(ctx: &Ctx, total: u64) -> Arc<Self> {
        let show = std::io::stderr().is_terminal() && !ctx.cli.json && !ctx.cli.no_progress;
        let bar = if show {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            ) {
                b.set_style(style);
            }
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        Arc::new(Transfers {
            bar,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            verbose: ctx.cli.verbose,
            json: ctx.cli.json,
            quota: crate::client::quota::QuotaPause::new(!ctx.cli.no_wait),
        })
    }

    /// Runs a download, waiting out MEGA's transfer quota when it runs out (unless
    /// `--no-wait`): said once per window, with a countdown on the bar (a JSON event line with
    /// `--json`); then the download is run again and resumes where it stopped.
    /// `run` is given the progress callback of this download: what an attempt counted is
    /// taken back before the next one (which counts what it resumes from again).
    pub(super) async fn patient<T, F, Fut>(
        self: &Arc<Self>,
        mut run: F,
    ) -> Result<T, crate::error::Error>
    where
        F: FnMut(Progress) -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::error::Error>>,
    {
        loop {
            let mine = Arc::new(AtomicU64::new(0));
            let (me, counted) = (self.clone(), mine.clone());
            let progress: Progress = Arc::new(move |n| {
                counted.fetch_add(n, Ordering::Relaxed);
                me.bar.inc(n);
                me.bytes.fetch_add(n, Ordering::Relaxed);
            });
            match run(progress).await {
                Err(crate::error::Error::TransferQuota { wait }) if self.quota.wait => {
                    let n = mine.load(Ordering::Relaxed);
                    self.bytes.fetch_sub(n, Ordering::Relaxed);
                    self.bar.set_position(self.bar.position().saturating_sub(n));
                    self.wait_for_quota(wait).await
                }
                r => return r,
            }
        }
    }

    async fn wait_for_quota(&self, wait: u64) {
        if self.quota.met(wait, true) {
            let at = crate::local::time::now() + wait as i64;
            if self.json {
                println!(
                    "{}",
                    json!({"event": "transfer_quota", "wait_seconds": wait, "resumes_at": at})
                );
            } else {
                self.bar.suspend(|| {
                    eprintln!(
                        "transfer quota exceeded: MEGA allows more in {}; waiting (--no-wait to stop instead)",
                        duration(wait)
                    )
                });
            }
        }
        // The countdown: never below zero, and the wait ends when it says so.
        while let Some(until) = self.quota.until() {
            self.bar.set_message(format!(
                "transfer quota: resuming in {}",
                duration(self.quota.left())
            ));
            let step = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(step.min(std::time::Duration::from_secs(1))).await;
        }
        self.bar.set_message("");
    }

    pub(super) fn progress(self: &Arc<Self>) -> Progress {
        let me = self.clone();
        Arc::new(move |n| {
            me.bar.inc(n);
            me.bytes.fetch_add(n, Ordering::Relaxed);
        })
    }

    pub(super) fn done(&self, line: impl FnOnce() -> String) {
        self.files.fetch_add(1, Ordering::Relaxed);
        if self.verbose >= 1 {
            self.bar.suspend(|| eprintln!("{}", line()));
        }
    }

    /// Clears the bar (before printing results of our own).
    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Prints the summary (stderr, or JSON on stdout).
    pub(super) fn summary(&self, ctx: &Ctx, verb: &str, extra: serde_json::Value) {
        self.bar.finish_and_clear();
        let files = self.files.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        if ctx.cli.json {
            let mut v = json!({"operation": verb, "files": files, "bytes": bytes, "seconds": secs});
            if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
                m.extend(e);
            }
            println!("{v}");
        } else {
            let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
            eprintln!(
                "{verb} {files} file(s), {} in {secs:.1} s ({}/s)",
                human(bytes),
                human(rate as u64)
            );
        }
    }
}

/// The outcome of several operations: every failure but the last is printed, the last (or a
/// count of them) is the command's error.
pub(super) fn outcome(total: usize, mut errors: Vec<CliError>) -> Result<(), CliError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        n => {
            for e in &errors {
                eprintln!("megacmd: {e}");
            }
            Err(CliError::new(
                errors[0].code,
                format!("{n} of {total} operations failed"),
            ))
        }
    }
}

/// Runs jobs `parallel` at a time (see [`crate::jobs`]), then reports their [`outcome`].
pub(super) async fn run_jobs<T, F, Fut>(parallel: usize, jobs: Vec<T>, f: F) -> Result<(), CliError>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let total = jobs.len();
    outcome(total, crate::jobs::run(parallel, jobs, f).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(303), "5 min 03 s");
        assert_eq!(duration(3725), "1 h 02 min");
    }

    #[test]
    fn size_formatting() {
        assert_eq!(human(5), "5 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(20 * 1024 * 1024), "20.0 MiB");
    }

    #[test]
    fn outcomes() {
        assert!(outcome(3, vec![]).is_ok());
        let one = outcome(3, vec![CliError::new(5, "x")]).unwrap_err();
        assert_eq!((one.code, one.msg.as_str()), (5, "x"));
        let two = outcome(3, vec![CliError::new(5, "x"), CliError::new(6, "y")]).unwrap_err();
        assert_eq!(two.code, 5);
        assert_eq!(two.msg, "2 of 3 operations failed");
    }
}
