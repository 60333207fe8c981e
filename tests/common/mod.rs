//! Shared helpers for integration tests: an in-process `mega-testserver` on 127.0.0.1:0 with
//! fresh accounts, fast retry settings, and deterministic test data.
//!
//! Every test's server is audited when its [`Env`] drops: no two uploads by any account made
//! with [`PASSWORD`] may share an AES key and nonce (`mega_testserver::audit::keystreams`).
//! So every test that writes through the product (mount, megacmd, sync, versions…) checks
//! the keystream promise at its end, without having to remember to.
#![allow(dead_code)]

use std::time::Duration;

use mega_mount::api::{ApiConfig, RetryConfig};
use mega_mount::Client;
use mega_testserver::{Config, TestServer, UserOptions};

pub mod megacmd;
pub mod mount;

pub struct Env {
    pub server: TestServer,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Fails the test if two uploads on this server (by accounts with [`PASSWORD`]) share a
    /// key and nonce. Also run when the `Env` drops.
    pub fn assert_fresh_keystreams(&self) -> mega_testserver::audit::KeystreamReport {
        let report =
            mega_testserver::audit::keystreams(self.server.store(), |_| Some(PASSWORD.to_string()))
                .expect("keystream audit");
        assert!(
            report.is_clean(),
            "uploads share a key and nonce: {:?}",
            report.repeats
        );
        report
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Not while a test is already failing: its own message matters more.
        if !std::thread::panicking() {
            self.assert_fresh_keystreams();
        }
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

impl Env {
    pub async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    /// A server whose configuration `edit` changed first (limits, quotas).
    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::new(dir.path().join("server"));
        cfg.wait_timeout = Duration::from_secs(5);
        edit(&mut cfg);
        let server = TestServer::start(cfg).await.expect("server starts");
        Env { server, dir }
    }

    pub async fn user(&self, email: &str, opts: UserOptions) {
        self.server
            .add_user(email, PASSWORD, opts)
            .await
            .expect("add user");
    }

    pub fn api_config(&self) -> ApiConfig {
        let mut c = ApiConfig::with_base_url(self.server.base_url());
        c.retry = fast_retry();
        c
    }

    pub async fn login(&self, email: &str) -> Client {
        self.login_result(email).await.expect("login")
    }

    /// Logs in, returning the error if it fails.
    pub async fn login_result(&self, email: &str) -> Result<Client, mega_mount::Error> {
        let mut c = Client::login(self.api_config(), email, PASSWORD, None).await?;
        c.set_transfer_config(mega_mount::transfer::TransferConfig {
            retry: fast_retry(),
            piece_size: 1024 * 1024,
            ..Default::default()
        });
        Ok(c)
    }

    /// An account made as before MEGA's key manager (no `^!keys`, no Ed25519/Cu25519 keys).
    pub async fn legacy_user(&self, email: &str) {
        self.user(
            email,
            UserOptions {
                legacy: true,
                ..Default::default()
            },
        )
        .await;
    }

    /// Sets a user attribute of `email`'s account as another client would (`up2`).
    pub async fn set_attr(&self, email: &str, name: &str, value: &[u8]) {
        use base64::Engine;
        let sid = self.server.open_session(email).expect("session");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
        let body = serde_json::json!([{"a": "up2", name: b64}]);
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("{}cs?id=1&sid={sid}", self.server.base_url()))
            .body(body.to_string())
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("up2 sent")
            .text()
            .await
            .map(|t| serde_json::from_str(&t).expect("up2 reply is JSON"))
            .expect("up2 reply");
        assert!(r[0][name].is_string(), "up2 failed: {r}");
    }

    /// A fresh account plus a logged-in client for it.
    pub async fn account(&self, email: &str) -> Client {
        self.user(email, UserOptions::default()).await;
        self.login(email).await
    }
}

pub fn fast_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 6,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
    }
}

/// Deterministic, non-repeating-looking content.
/// An encoded picture of `w`×`h` (a gradient, so encoders have work to do).
pub fn picture(w: u32, h: u32, fmt: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, fmt)
        .expect("encoding a test picture");
    out.into_inner()
}

pub fn data(size: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9 ^ seed as u32;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Waits until `f` is true, polling; fails the test after `secs`.
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The first file under `dir` (recursively) whose bytes contain `marker`: plaintext that
/// reached the disk.
pub fn file_holding(dir: &std::path::Path, marker: &[u8]) -> Option<std::path::PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            if let Some(f) = file_holding(&p, marker) {
                return Some(f);
            }
        } else if t.is_file() {
            // A file can vanish or grow while it is read: what was read is what counts.
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(marker.len()).any(|w| w == marker) {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Makes two accounts contacts as MEGA's apps do: `a` invites `b`, `b` accepts; both trees
/// then know it. Sharing a folder with someone who is not a contact only invites them.
pub async fn befriend(a: &Client, a_email: &str, b: &Client, b_email: &str) {
    a.invite(b_email, None).await.expect("invite");
    b.fetch().await.expect("fetch the invitation");
    b.answer_invitation(a_email, mega_mount::client::contacts::Answer::Accept)
        .await
        .expect("accept");
    a.fetch().await.expect("fetch the new contact");
    b.fetch().await.expect("fetch the new contact");
}
