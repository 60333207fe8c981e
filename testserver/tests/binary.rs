//! The `mega-testserver` binary: `useradd`, serving on port 0 with the URL as the first line
//! of stdout, `--fault` at start, the run-time admin endpoint, and a clean exit on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mega-testserver");

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn useradd_then_serve_with_faults() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = Command::new(BIN)
        .args([
            "useradd",
            "--data",
            data,
            "Someone@Example.com",
            "pw",
            "--v1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created someone@example.com (v1"));
    let again = Command::new(BIN)
        .args(["useradd", "--data", data, "someone@example.com", "pw"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let mut child = Child(
        Command::new(BIN)
            .args([
                "--data",
                data,
                "--listen",
                "127.0.0.1:0",
                "--fault",
                "cs_eagain=1",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let cs = |body: &'static str| {
            http.post(format!("{url}cs?id=1"))
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
        };
        let body = r#"[{"a":"us0","user":"someone@example.com"}]"#;
        let token =
            std::fs::read_to_string(std::path::Path::new(data).join("admin-token")).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(std::path::Path::new(data).join("admin-token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the admin token file is private");
        }
        assert_eq!(cs(body).await.unwrap().text().await.unwrap(), "-3");
        assert_eq!(
            cs(body).await.unwrap().text().await.unwrap(),
            r#"[{"v":1}]"#
        );
        let unauthorized = http
            .post(format!("{url}__admin/faults"))
            .header("content-type", "application/json")
            .body(r#"{"cs_http503": 1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(unauthorized.status().as_u16(), 401, "no token, no admin");
        let r = http
            .post(format!("{url}__admin/faults"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"cs_http503": 1}"#)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        assert_eq!(cs(body).await.unwrap().status().as_u16(), 503);
        assert_eq!(cs(body).await.unwrap().status().as_u16(), 200);
        let bad = http
            .post(format!("{url}__admin/faults"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"no_such_fault": 1}"#)
            .send()
            .await
            .unwrap();
        assert!(bad.status().is_client_error());
        // What ran, counted by command (the two `us0` above, one of them faulted before it
        // ran; the 503 never reached a command).
        let stats = http
            .get(format!("{url}__admin/stats"))
            .send()
            .await
            .unwrap();
        assert_eq!(stats.status().as_u16(), 401, "no token, no stats");
        let stats = http
            .get(format!("{url}__admin/stats"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
        assert!(stats["commands"]["us0"].as_u64().unwrap() >= 1, "{stats}");
        assert_eq!(stats["held_now"], 0, "{stats}");
    });

    // SIGTERM ends it cleanly.
    let pid = child.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_arguments_are_reported() {
    let out = Command::new(BIN).args(["--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
    let out = Command::new(BIN)
        .args(["--data", "/tmp/x", "--fault", "nope=1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown fault"));
}
