//! Fault injection, configurable at start (`--fault NAME=N`, [`crate::Config::faults`]) and at
//! run time (in-process through [`Faults`], or `POST /__admin/faults` with a JSON object for a
//! server running as a child process).
//!
//! Counted faults fire on the next N matching requests and then stop; `latency_ms`,
//! `bandwidth_bps` and `corrupt_downloads` stay in force until changed. `corrupt_after`
//! tampers from a given point on: downloads are served intact until that many more bytes went
//! out, then the byte at that point is flipped and `corrupt_downloads` turns on, so content a
//! client already read (and verified) changes under it, as a tampering server would.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The fault settings. Counts are "the next N requests of that kind".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// `/cs` answers a bare `-3` (EAGAIN) without running the commands.
    pub cs_eagain: u32,
    /// `/cs` answers a bare `-4` (ERATELIMIT) without running the commands.
    pub cs_ratelimit: u32,
    /// `/cs` answers HTTP 500.
    pub cs_http500: u32,
    /// `/cs` answers HTTP 503.
    pub cs_http503: u32,
    /// `/cs` runs the commands, then drops the connection before the reply body is complete
    /// (the client cannot know whether they ran: it must retry with the same request id).
    pub cs_drop: u32,
    /// `/cs` answers HTTP 402 with an `X-Hashcash` challenge first.
    pub hashcash: u32,
    /// Easiness of hashcash challenges (255 = easiest; the SDK's tests use 180-192).
    pub hashcash_easiness: u8,
    /// Downloads answer HTTP 500.
    pub dl_http500: u32,
    /// Downloads answer HTTP 503.
    pub dl_http503: u32,
    /// Downloads send half the body, then drop the connection.
    pub dl_drop: u32,
    /// Uploads answer HTTP 500.
    pub ul_http500: u32,
    /// Uploads answer HTTP 503.
    pub ul_http503: u32,
    /// Uploads read the body, then drop the connection without storing it.
    pub ul_drop: u32,
    /// File attribute POSTs (`/fa/…`, storing or fetching thumbnails) answer HTTP 503.
    pub fa_http503: u32,
    /// Uploads wait (before reading the body) while this is set: a client's uploads are
    /// in flight for as long as a test needs.
    pub ul_hold: bool,
    /// Every download has one byte flipped (until set back to false).
    pub corrupt_downloads: bool,
    /// 0: off. N: the next N bytes of downloads are served intact, the byte after them is
    /// flipped, and from then on every download is corrupted (`corrupt_downloads` turns on).
    pub corrupt_after: u64,
    /// Added latency per request, in milliseconds.
    pub latency_ms: u64,
    /// `/cs` runs the commands (their action packets go out at once), then waits this many
    /// milliseconds before replying: a client's own echo reaches its event channel before
    /// the reply, as happens on the real service under load.
    pub cs_reply_delay_ms: u64,
    /// Download bandwidth cap in bytes per second (0 = unlimited).
    pub bandwidth_bps: u64,
    /// API commands (by `a`) answered `-1` (EINTERNAL) without running, as an older or
    /// independent server that does not know them answers (`--fault unknown_commands=uga,pk`).
    pub unknown_commands: Vec<String>,
    /// API requests holding any of these commands (by `a`) wait, before running, while this
    /// is set: a client's `p` (say) is on its way for as long as a test needs
    /// (`--fault cs_hold=p`).
    pub cs_hold: Vec<String>,
}

/// What a request of some kind should suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Eagain,
    RateLimit,
    Http500,
    Http503,
    Drop,
    Hashcash,
}

/// Shared, mutable fault state.
#[derive(Debug, Default)]
pub struct Faults {
    cfg: Mutex<FaultConfig>,
}

fn take(n: &mut u32) -> bool {
    if *n > 0 {
        *n -= 1;
        true
    } else {
        false
    }
}

impl Faults {
    pub fn new(cfg: FaultConfig) -> Self {
        Faults {
            cfg: Mutex::new(cfg),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultConfig> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the whole configuration.
    pub fn set(&self, cfg: FaultConfig) {
        *self.lock() = cfg;
    }

    /// Changes part of the configuration.
    pub fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        f(&mut self.lock());
    }

    pub fn get(&self) -> FaultConfig {
        self.lock().clone()
    }

    pub fn next_cs(&self) -> Fault {
        let mut c = self.lock();
        if take(&mut c.hashcash) {
            Fault::Hashcash
        } else if take(&mut c.cs_eagain) {
            Fault::Eagain
        } else if take(&mut c.cs_ratelimit) {
            Fault::RateLimit
        } else if take(&mut c.cs_http500) {
            Fault::Http500
        } else if take(&mut c.cs_http503) {
            Fault::Http503
        } else if take(&mut c.cs_drop) {
            Fault::Drop
        } else {
            Fault::None
        }
    }

    pub fn next_download(&self) -> Fault {
        let mut c = self.lock();
        if take(&mut c.dl_http500) {
            Fault::Http500
        } else if take(&mut c.dl_http503) {
            Fault::Http503
        } else if take(&mut c.dl_drop) {
            Fault::Drop
        } else {
            Fault::None
        }
    }

    pub fn next_upload(&self) -> Fault {
        let mut c = self.lock();
        if take(&mut c.ul_http500) {
            Fault::Http500
        } else if take(&mut c.ul_http503) {
            Fault::Http503
        } else if take(&mut c.ul_drop) {
            Fault::Drop
        } else {
            Fault::None
        }
    }

    pub fn next_file_attr(&self) -> Fault {
        if take(&mut self.lock().fa_http503) {
            Fault::Http503
        } else {
            Fault::None
        }
    }

    /// Whether uploads are held (see [`FaultConfig::ul_hold`]).
    pub fn upload_held(&self) -> bool {
        self.lock().ul_hold
    }

    pub fn latency(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lock().latency_ms)
    }

    pub fn reply_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lock().cs_reply_delay_ms)
    }

    /// Whether an API request body (a JSON array of commands) holds a command that is held
    /// (see [`FaultConfig::cs_hold`]).
    pub fn request_held(&self, body: &[u8]) -> bool {
        let held = self.lock().cs_hold.clone();
        if held.is_empty() {
            return false;
        }
        let Ok(cmds) = serde_json::from_slice::<Vec<serde_json::Value>>(body) else {
            return false;
        };
        cmds.iter().any(|c| {
            c.get("a")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|a| held.iter().any(|h| h == a))
        })
    }

    /// Whether the command `a` is answered as unknown (see [`FaultConfig::unknown_commands`]).
    pub fn unknown(&self, a: &str) -> bool {
        self.lock().unknown_commands.iter().any(|c| c == a)
    }

    pub fn bandwidth(&self) -> u64 {
        self.lock().bandwidth_bps
    }

    /// Where in a download response of `len` bytes a bit is flipped, if anywhere: the first
    /// byte with `corrupt_downloads`, else the byte at which `corrupt_after`'s intact budget
    /// runs out (the budget shrinks by what this response serves intact).
    pub fn corruption(&self, len: u64) -> Option<u64> {
        let mut c = self.lock();
        if c.corrupt_downloads {
            return (len > 0).then_some(0);
        }
        if c.corrupt_after == 0 {
            return None;
        }
        if len < c.corrupt_after {
            c.corrupt_after -= len;
            return None;
        }
        let at = c.corrupt_after;
        c.corrupt_after = 0;
        c.corrupt_downloads = true;
        (at < len).then_some(at)
    }

    pub fn hashcash_easiness(&self) -> u8 {
        let e = self.lock().hashcash_easiness;
        if e == 0 {
            255
        } else {
            e
        }
    }
}

/// Parses `NAME=VALUE` (as given to `--fault`) into the configuration.
pub fn apply_arg(cfg: &mut FaultConfig, arg: &str) -> Result<(), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("--fault expects NAME=VALUE, got {arg:?}"))?;
    let mut v = serde_json::to_value(&*cfg).map_err(|e| e.to_string())?;
    let slot = v
        .get_mut(name)
        .ok_or_else(|| format!("unknown fault {name:?}"))?;
    *slot = if slot.is_boolean() {
        serde_json::Value::Bool(matches!(value, "1" | "true" | "yes"))
    } else if slot.is_array() {
        value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(serde_json::Value::from)
            .collect()
    } else {
        serde_json::Value::from(
            value
                .parse::<u64>()
                .map_err(|_| format!("fault {name} needs a number, got {value:?}"))?,
        )
    };
    *cfg = serde_json::from_value(v).map_err(|e| format!("fault {name}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_after_serves_its_budget_intact_then_corrupts_everything() {
        let f = Faults::new(FaultConfig {
            corrupt_after: 10,
            ..Default::default()
        });
        assert_eq!(f.corruption(4), None);
        assert_eq!(f.corruption(4), None);
        // 2 bytes of budget left: the third byte of this response is flipped.
        assert_eq!(f.corruption(5), Some(2));
        assert!(f.get().corrupt_downloads && f.get().corrupt_after == 0);
        assert_eq!(f.corruption(7), Some(0));
        assert_eq!(Faults::default().corruption(7), None);
        // A budget that ends exactly at a response's end corrupts the next one.
        let f = Faults::new(FaultConfig {
            corrupt_after: 3,
            ..Default::default()
        });
        assert_eq!(f.corruption(3), None);
        assert_eq!(f.corruption(3), Some(0));
    }

    #[test]
    fn held_commands_hold_the_requests_that_carry_them() {
        let mut cfg = FaultConfig::default();
        apply_arg(&mut cfg, "cs_hold=p").unwrap();
        let f = Faults::new(cfg);
        assert!(f.request_held(br#"[{"a":"ug"},{"a":"p","t":"x"}]"#));
        assert!(!f.request_held(br#"[{"a":"ug"}]"#));
        assert!(!f.request_held(b"not json"));
        f.update(|c| c.cs_hold.clear());
        assert!(!f.request_held(br#"[{"a":"p"}]"#));
    }

    #[test]
    fn unknown_commands_are_given_as_a_list() {
        let mut cfg = FaultConfig::default();
        apply_arg(&mut cfg, "unknown_commands=uga, pk").unwrap();
        let f = Faults::new(cfg);
        assert!(f.unknown("uga") && f.unknown("pk") && !f.unknown("ug"));
    }
}
