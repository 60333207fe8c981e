//! Transfer concurrency: how many download and upload requests the server is handling at once,
//! now and at the peak, so tests can show that a client does not serialize its transfers; and
//! how many times each API command ran, so tests can show what a client did not ask for (a
//! warm start sends no `f`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Requests of one kind in progress, and the most seen at once.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Gauge {
    /// Counts a request in until the guard drops.
    pub fn enter(&self) -> GaugeGuard<'_> {
        let n = self.now.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(n, Ordering::AcqRel);
        GaugeGuard(self)
    }

    pub fn now(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Acquire)
    }

    /// Starts a new peak measurement from the requests in progress now.
    pub fn reset_peak(&self) {
        self.peak.store(self.now(), Ordering::Release);
    }
}

/// Keeps a request counted in its [`Gauge`].
pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Concurrency of content transfers.
#[derive(Debug, Default)]
pub struct Stats {
    /// Download requests (`/dl/...`), from arrival until the reply starts streaming.
    pub downloads: Gauge,
    /// Upload chunk requests (`/ul/...`), from arrival until the chunk is stored.
    pub uploads: Gauge,
    /// API requests waiting while a command they carry is held (`cs_hold`).
    pub held: Gauge,
    /// API commands run, by name (`a`), since the start; `sc` polls counted as `"sc"`.
    commands: Mutex<HashMap<String, u64>>,
    /// Download requests (ranged or whole) since the start.
    download_requests: AtomicU64,
    /// Ciphertext bytes streamed to downloads since the start.
    download_bytes: AtomicU64,
}

impl Stats {
    /// Counts one command (an unknown name is counted too: the server saw it).
    pub(crate) fn count(&self, name: &str) {
        let mut m = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                m.insert(name.to_string(), 1);
            }
        }
    }

    /// Counts one download request.
    pub(crate) fn count_download(&self) {
        self.download_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes streamed to a download.
    pub(crate) fn count_download_bytes(&self, n: u64) {
        self.download_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// How many content bytes downloads were sent since the start (tests of resumed
    /// downloads count what a second run fetched).
    pub fn download_bytes(&self) -> u64 {
        self.download_bytes.load(Ordering::Relaxed)
    }

    /// How many download requests (`/dl/...`, ranged or whole) arrived since the start.
    pub fn download_requests(&self) -> u64 {
        self.download_requests.load(Ordering::Relaxed)
    }

    /// Everything counted, as `/__admin/stats` answers it.
    pub fn report(&self) -> serde_json::Value {
        let commands = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        serde_json::json!({
            "commands": commands,
            "download_requests": self.download_requests(),
            "download_bytes": self.download_bytes(),
            "downloads_now": self.downloads.now(),
            "uploads_now": self.uploads.now(),
            "held_now": self.held.now(),
        })
    }

    /// How many times a command (`"f"`, `"sc"`, …) ran since the server started.
    pub fn commands(&self, name: &str) -> u64 {
        let m = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        m.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_counts_overlap() {
        let g = Gauge::default();
        {
            let _a = g.enter();
            let _b = g.enter();
            assert_eq!(g.now(), 2);
        }
        let _c = g.enter();
        assert_eq!((g.now(), g.peak()), (1, 2));
        g.reset_peak();
        assert_eq!(g.peak(), 1);
    }
}
