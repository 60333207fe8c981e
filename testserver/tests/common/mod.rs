//! Shared helpers of the server's tests: a server on 127.0.0.1:0 in a temporary directory,
//! v1 accounts with sessions, and raw `/cs` commands.

#![allow(clippy::unwrap_used, dead_code)]

use std::time::Duration;

use mega_testserver::{crypto, Config, Limits, TestServer, UserOptions};
use serde_json::{json, Value};

pub struct Env {
    pub server: TestServer,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    pub data: std::path::PathBuf,
}

pub async fn start(limits: Limits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = Config::new(&data);
    cfg.limits = limits;
    cfg.wait_timeout = Duration::from_secs(3);
    let server = TestServer::start(cfg).await.unwrap();
    Env {
        server,
        http: reqwest::Client::new(),
        _dir: dir,
        data,
    }
}

pub const PASSWORD: &str = "pw";

impl Env {
    /// A v1 account (its login hash is cheap to compute here) and a session for it.
    pub async fn account(&self, email: &str, quota: i64) -> String {
        self.server
            .add_user(
                email,
                PASSWORD,
                UserOptions {
                    v1: true,
                    quota,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.server.open_session(email).unwrap()
    }

    /// A v1 account made as before the key manager (no `^!keys`), and a session for it.
    pub async fn legacy_account(&self, email: &str) -> String {
        self.server
            .add_user(
                email,
                PASSWORD,
                UserOptions {
                    v1: true,
                    legacy: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.server.open_session(email).unwrap()
    }

    /// One `/cs` request; the raw reply text.
    pub async fn cs_raw(&self, query: &str, body: &Value) -> String {
        self.http
            .post(format!("{}cs?{query}", self.server.base_url()))
            .body(body.to_string())
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// One command with a session; its result.
    /// Makes two accounts contacts: `a` invites `b_email`, `b` accepts (sharing with anyone
    /// else only invites them).
    pub async fn befriend(&self, a: &str, b: &str, b_email: &str) {
        let r = self
            .run(a, serde_json::json!({"a": "upc", "u": b_email, "aa": "a"}))
            .await;
        let p = r["p"].as_str().expect("an invitation").to_string();
        let r = self
            .run(b, serde_json::json!({"a": "upca", "p": p, "aa": "a"}))
            .await;
        assert_eq!(r, serde_json::json!(0));
    }

    pub async fn run(&self, sid: &str, cmd: Value) -> Value {
        let q = format!("id={}&sid={sid}", rand_id());
        let r: Value = serde_json::from_str(&self.cs_raw(&q, &json!([cmd])).await).unwrap();
        r.get(0).cloned().unwrap_or(r)
    }

    pub async fn root(&self, sid: &str) -> String {
        let f = self.run(sid, json!({"a": "f", "c": 1})).await;
        f["f"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["t"] == json!(2))
            .unwrap()["h"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn mkdir(&self, sid: &str, parent: &str) -> String {
        let r = self
            .run(
                sid,
                json!({"a": "p", "t": parent, "n": [{"h": "xxxxxxxx", "t": 1, "a": "QUFBQQ", "k": "QUFBQUFBQUFBQUFBQUFBQQ"}]}),
            )
            .await;
        r["f"][0]["h"].as_str().unwrap().to_string()
    }

    /// Exports a folder as a link; returns the public handle.
    pub async fn export(&self, sid: &str, folder: &str) -> String {
        let ok = crypto::b64e(&[1u8; 16]);
        let r = self
            .run(
                sid,
                json!({"a": "s2", "n": folder, "s": [{"u": "EXP", "r": 0}], "ok": ok, "ha": ok}),
            )
            .await;
        assert_eq!(r, json!(0));
        self.run(sid, json!({"a": "l", "n": folder}))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn admin(&self, path: &str, token: Option<&str>, body: &str) -> u16 {
        let mut req = self
            .http
            .post(format!("{}__admin/{path}", self.server.base_url()))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().status().as_u16()
    }
}

pub fn rand_id() -> String {
    crypto::b64e(&crypto::random_bytes::<6>())
}

/// The login hash of a v1 account.
pub fn uh(email: &str) -> String {
    crypto::b64e(&crypto::stringhash(
        email,
        &crypto::prepare_key(PASSWORD.as_bytes()),
    ))
}

impl Env {
    /// The raw `sc` answer for a cursor.
    pub async fn sc_text(&self, sid: &str, sn: &str) -> String {
        self.http
            .post(format!("{}sc?sn={sn}&sid={sid}", self.server.base_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The packets after `sn`, and the new `sn`.
    pub async fn packets_after(&self, sid: &str, sn: &str) -> (Vec<Value>, String) {
        let text = self.sc_text(sid, sn).await;
        let r: Value = serde_json::from_str(&text).unwrap();
        let packets = r["a"].as_array().cloned().unwrap_or_default();
        let sn = r["sn"].as_str().map_or(sn.to_string(), str::to_string);
        (packets, sn)
    }

    /// The whole tree (`f`).
    pub async fn fetch(&self, sid: &str) -> Value {
        self.run(sid, json!({"a": "f", "c": 1})).await
    }

    /// Uploads `data` (as if it were ciphertext); the completion token.
    pub async fn upload(&self, sid: &str, data: &[u8]) -> String {
        let r = self.run(sid, json!({"a": "u", "s": data.len()})).await;
        let url = r["p"].as_str().unwrap().to_string();
        self.http
            .post(format!("{url}/0"))
            .body(data.to_vec())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Creates a file node from uploaded `data` in `parent`, as a new version of `ov` if
    /// given; the `p` reply.
    pub async fn put_file(&self, sid: &str, parent: &str, data: &[u8], ov: Option<&str>) -> Value {
        let token = self.upload(sid, data).await;
        let mut n = json!({"h": token, "t": 0, "a": "QUFBQQ", "k": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE"});
        if let Some(ov) = ov {
            n["ov"] = json!(ov);
        }
        self.run(sid, json!({"a": "p", "t": parent, "n": [n]}))
            .await
    }
}
