//! A hostile or broken server cannot make the client allocate what it says: sizes, counts and
//! lengths from the server are checked before they size anything, and a nonsensical value is
//! a protocol error, not an abort. A tiny HTTP server on 127.0.0.1:0 plays the server.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mega_mount::api::{ApiClient, ApiConfig, RetryConfig};
use mega_mount::crypto::{b64, FileKey};
use mega_mount::transfer::{download, Source, TransferConfig};
use mega_mount::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves every request with `reply(path)`: (status line + headers, body).
async fn serve(reply: fn(&str) -> (String, Vec<u8>)) -> String {
    serve_with(std::sync::Arc::new(move |path: &str, _: &[u8]| reply(path))).await
}

type Handler = std::sync::Arc<dyn Fn(&str, &[u8]) -> (String, Vec<u8>) + Send + Sync>;

/// Serves every request with `reply(path, body)`.
async fn serve_with(reply: Handler) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let end = (head_end + len).min(buf.len());
                let (headers, body) = reply(&path, &buf[head_end..end]);
                let _ = sock.write_all(headers.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}/")
}

fn ok_json(body: &str) -> (String, Vec<u8>) {
    (
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ),
        body.as_bytes().to_vec(),
    )
}

fn api(url: &str) -> ApiClient {
    let mut cfg = ApiConfig::with_base_url(url);
    cfg.retry = RetryConfig {
        max_retries: 1,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };
    ApiClient::new(cfg).unwrap()
}

#[tokio::test]
async fn a_public_file_of_impossible_size_is_a_protocol_error() {
    let url = serve(|_| {
        ok_json(r#"[{"g": "http://127.0.0.1:9/dl", "s": 1152921504606846976, "at": "AAAA"}]"#)
    })
    .await;
    let key = FileKey {
        aes: [1; 16],
        nonce: [2; 8],
        meta_mac: [3; 8],
    };
    let link = mega_mount::link::file_link("AAAAAAAA", &key);
    let r = mega_mount::client::public_file(&api(&url), &link, false).await;
    assert!(
        matches!(&r, Err(Error::Protocol(m)) if m.contains("size")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_reply_announcing_gigabytes_is_refused_before_it_is_read() {
    // Content-Length of 3 GiB, and no body: refused at once, nothing allocated or awaited.
    let url = serve(|_| {
        (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 3221225472\r\n\r\n"
                .into(),
            b"[".to_vec(),
        )
    })
    .await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        api(&url).call(serde_json::json!({"a": "uq"})),
    )
    .await
    .expect("answered at once");
    let e = Error::from(r.unwrap_err());
    assert!(
        matches!(&e, Error::Protocol(m) if m.contains("longer than")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_download_longer_than_its_range_is_refused() {
    // Asked for 100 bytes, the server sends a megabyte.
    let url = serve(|_| {
        let body = vec![0u8; 1 << 20];
        (
            format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            ),
            body,
        )
    })
    .await;
    let src = Source {
        url: Some(format!("{url}dl")),
        size: 100,
        key: FileKey {
            aes: [1; 16],
            nonce: [2; 8],
            meta_mac: [3; 8],
        },
        refresh: None,
    };
    let mut out = Vec::new();
    let r = download::download(
        &reqwest::Client::new(),
        &src,
        &mut out,
        &TransferConfig::default(),
        None,
    )
    .await;
    let e = Error::from(r.unwrap_err());
    assert!(
        matches!(&e, Error::Protocol(m) if m.contains("longer than")),
        "{e:?}"
    );
    assert!(out.is_empty(), "nothing unverified was written");
}

#[tokio::test]
async fn malformed_replies_are_protocol_errors() {
    let url = serve(|_| ok_json(r#"[{"p": 5}]"#)).await;
    let r = mega_mount::transfer::upload::upload_url(&api(&url), 10, false).await;
    let e = Error::from(r.unwrap_err());
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

/// Be liberal in what replies omit: a login reply without the user handle (only the official
/// SDK needs it there) still logs in; the handle comes from `ug`.
#[tokio::test]
async fn a_login_reply_without_the_user_handle_still_logs_in() {
    use mega_mount::crypto::{kdf, Key128};
    let pwkey = kdf::prepare_key(b"secret");
    let mk = Key128([5; 16]);
    let k = b64::encode(&pwkey.wrap(&mk.0));
    let mut tsid = vec![9u8; 27];
    tsid.extend(mk.wrap(&[9u8; 16]));
    let tsid = b64::encode(&tsid);
    let url = serve_with(std::sync::Arc::new(move |_path: &str, body: &[u8]| {
        let cmd: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        match cmd[0]["a"].as_str() {
            Some("us0") => ok_json(r#"[{"v": 1}]"#),
            Some("us") => ok_json(&format!(r#"[{{"k": "{k}", "tsid": "{tsid}"}}]"#)),
            Some("ug") => ok_json(r#"[{"u": "UUUUUUUUUUU", "email": "a@b.example"}]"#),
            _ => ok_json("[-2]"),
        }
    }))
    .await;
    let s = mega_mount::api::session::login(&api(&url), "a@b.example", "secret", None)
        .await
        .unwrap();
    assert_eq!(s.user, "UUUUUUUUUUU");
    assert_eq!(s.master_key.0 .0, [5; 16]);
}

/// With HTTPS transfers required, the client asks for them (`ssl: 2`) and refuses a plain
/// HTTP URL instead of sending data over it.
#[tokio::test]
async fn https_transfers_are_asked_for_and_insisted_on() {
    let url = serve_with(std::sync::Arc::new(|_path: &str, body: &[u8]| {
        let cmd: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        if cmd[0]["ssl"] == serde_json::json!(2) {
            ok_json(r#"[{"p": "http://127.0.0.1:9/ul/plain"}]"#)
        } else {
            ok_json("[-2]")
        }
    }))
    .await;
    let r = mega_mount::transfer::upload::upload_url(&api(&url), 10, true).await;
    let e = Error::from(r.unwrap_err());
    assert!(
        matches!(&e, Error::Protocol(m) if m.contains("HTTPS")),
        "{e:?}"
    );
}
