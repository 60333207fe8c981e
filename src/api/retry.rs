//! The one retry policy for everything that talks to MEGA: `/cs` commands, ranged downloads,
//! chunk uploads and the event channel. A caller makes an attempt, classifies how it failed
//! ([`Failure`]), and asks [`Retrying::after`] whether to try again; that waits out an
//! exponential backoff with jitter, or says why not.
//!
//! Each caller states whether its request is safe to repeat ([`Repeat`]). A failure that
//! leaves the outcome unknown (the connection broke after the request was sent, a timeout) is
//! retried only for requests that are safe to repeat: `/cs` batches carry a request id the
//! server deduplicates by, a chunk POST or a ranged GET is idempotent. A failure where the
//! request certainly did not take effect (EAGAIN for the whole request, HTTP 5xx, a refused
//! connection) may always be retried.

use std::time::Duration;

use rand::Rng;

/// Backoff settings shared by API calls and transfers.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts after the first one before giving up.
    pub max_retries: u32,
    /// First backoff delay; doubles on each attempt.
    pub initial_delay: Duration,
    /// Upper bound of one delay (before jitter).
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 8,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// The delay before retry number `attempt` (0-based): exponential, capped, plus 0–50 %
    /// random jitter so that many clients do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial_delay
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_delay);
        let jitter = rand::thread_rng().gen_range(0.0..0.5);
        base + base.mul_f64(jitter)
    }

    /// Starts retrying one request.
    pub fn start(&self, what: &'static str, repeat: Repeat) -> Retrying<'_> {
        Retrying {
            cfg: self,
            what,
            repeat,
            attempt: 0,
            forever: false,
        }
    }
}

/// Whether a request may be sent again when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Idempotent, or deduplicated by the server (a `/cs` request id): always safe.
    Safe,
    /// Would act twice if it reached the server twice: retried only when it certainly did not.
    UnlessSent,
}

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request certainly did not take effect (EAGAIN, rate limit, HTTP 5xx, no
    /// connection): trying again later may work.
    NotApplied,
    /// The request may or may not have taken effect (timeout, connection dropped mid-reply).
    Unknown,
    /// Trying again cannot help.
    Permanent,
}

/// Why [`Retrying::after`] says not to try again.
#[derive(Debug)]
pub enum GiveUp<E> {
    /// The failure is permanent, or its outcome unknown for a request that is not safe to
    /// repeat: the error as it was.
    Final(E),
    /// Transient failures went on past the retry budget.
    Exhausted { attempts: u32, last: E },
}

/// The retry state of one request.
#[derive(Debug)]
pub struct Retrying<'a> {
    cfg: &'a RetryConfig,
    what: &'static str,
    repeat: Repeat,
    attempt: u32,
    forever: bool,
}

impl Retrying<'_> {
    /// Never gives up on transient failures (for long-lived loops such as the event channel);
    /// the delay stops growing at the budget's last step.
    pub fn forever(mut self) -> Self {
        self.forever = true;
        self
    }

    /// Attempts made so far that failed.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a failed attempt: waits and returns `Ok` if it should be tried again, else says
    /// why not.
    pub async fn after<E: std::fmt::Display>(
        &mut self,
        err: E,
        failure: Failure,
    ) -> Result<(), GiveUp<E>> {
        let again = match failure {
            Failure::NotApplied => true,
            Failure::Unknown => self.repeat == Repeat::Safe,
            Failure::Permanent => false,
        };
        if !again {
            return Err(GiveUp::Final(err));
        }
        if !self.forever && self.attempt >= self.cfg.max_retries {
            return Err(GiveUp::Exhausted {
                attempts: self.attempt + 1,
                last: err,
            });
        }
        let delay = self.cfg.delay(self.attempt.min(self.cfg.max_retries));
        tracing::debug!(what = self.what, attempt = self.attempt, ?delay, error = %err, "retrying");
        tokio::time::sleep(delay).await;
        self.attempt = self.attempt.saturating_add(1);
        Ok(())
    }

    /// Starts over after a success inside a long-lived loop.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(max_retries: u32) -> RetryConfig {
        RetryConfig {
            max_retries,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetryConfig {
            max_retries: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for a in 0..10 {
            let d = r.delay(a);
            let base = (100u64 << a.min(20)).min(1000);
            assert!(d >= Duration::from_millis(base));
            assert!(d <= Duration::from_millis(base * 3 / 2));
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_budget() {
        let cfg = quick(2);
        let mut r = cfg.start("test", Repeat::Safe);
        assert!(r.after("e1", Failure::NotApplied).await.is_ok());
        assert!(r.after("e2", Failure::Unknown).await.is_ok());
        match r.after("e3", Failure::NotApplied).await {
            Err(GiveUp::Exhausted { attempts: 3, last }) => assert_eq!(last, "e3"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn permanent_and_unsafe_unknown_failures_are_final() {
        let cfg = quick(5);
        let mut r = cfg.start("test", Repeat::Safe);
        assert!(matches!(
            r.after("p", Failure::Permanent).await,
            Err(GiveUp::Final("p"))
        ));
        let mut r = cfg.start("test", Repeat::UnlessSent);
        assert!(matches!(
            r.after("u", Failure::Unknown).await,
            Err(GiveUp::Final("u"))
        ));
        assert!(r.after("n", Failure::NotApplied).await.is_ok());
    }

    #[tokio::test]
    async fn forever_never_exhausts() {
        let cfg = quick(1);
        let mut r = cfg.start("test", Repeat::Safe).forever();
        for _ in 0..5 {
            assert!(r.after("e", Failure::NotApplied).await.is_ok());
        }
        assert_eq!(r.attempts(), 5);
        r.reset();
        assert_eq!(r.attempts(), 0);
    }
}
