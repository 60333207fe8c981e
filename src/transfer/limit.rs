//! Bandwidth limits (`--bwlimit UP:DOWN`, `-o bwlimit=`): one pacer per direction, shared by
//! every transfer of a client. A request of `n` bytes takes its turn: it may start once the
//! bytes before it have had their time at the rate, and it waits its own share first, so
//! the average over a transfer never exceeds the rate (the first request is not free).
//! Requests are whole pieces: with a limit set, pieces are made about a second's worth, so
//! the pace is smooth.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate in bytes per second, for one direction.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    /// When the bytes handed out so far have had their time.
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// When `n` more bytes may go: after the ones before them and their own share.
    fn reserve(&self, n: u64, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.map_or(now, |t| t.max(now));
        let done = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
        *next = Some(done);
        done
    }
}

/// Upload and download limits.
#[derive(Debug, Default)]
pub struct Bandwidth {
    up: Option<Pacer>,
    down: Option<Pacer>,
}

impl Bandwidth {
    /// Limits in bytes per second (`None`: unlimited).
    pub fn new(up: Option<u64>, down: Option<u64>) -> Self {
        let pacer = |r: Option<u64>| {
            r.filter(|r| *r > 0).map(|rate| Pacer {
                rate,
                next: Mutex::new(None),
            })
        };
        Bandwidth {
            up: pacer(up),
            down: pacer(down),
        }
    }

    /// The upload rate, if limited.
    pub fn up_rate(&self) -> Option<u64> {
        self.up.as_ref().map(|p| p.rate)
    }

    /// The download rate, if limited.
    pub fn down_rate(&self) -> Option<u64> {
        self.down.as_ref().map(|p| p.rate)
    }

    /// Waits until `n` bytes may be sent.
    pub async fn send(&self, n: u64) {
        if let Some(p) = &self.up {
            tokio::time::sleep_until(p.reserve(n, Instant::now()).into()).await;
        }
    }

    /// Waits until `n` bytes may be fetched.
    pub async fn fetch(&self, n: u64) {
        if let Some(p) = &self.down {
            tokio::time::sleep_until(p.reserve(n, Instant::now()).into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_turns_at_the_rate() {
        let p = Pacer {
            rate: 1000,
            next: Mutex::new(None),
        };
        let t0 = Instant::now();
        // The first request waits its own share; the next ones queue behind it.
        assert_eq!(p.reserve(500, t0), t0 + Duration::from_millis(500));
        assert_eq!(p.reserve(1000, t0), t0 + Duration::from_millis(1500));
        // After an idle spell no credit is saved up.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.reserve(100, later), later + Duration::from_millis(100));
    }
}
