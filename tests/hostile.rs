//! A hostile or broken server cannot make the client allocate what it says: sizes, counts and
//! lengths from the server are checked before they size anything, and a nonsensical value is
//! a protocol error, not an abort. A tiny HTTP server on 127.0.0.1:0 plays the server.
//!
//! Besides the hand-written cases, replies are generated: every position of well-formed
//! `f`, `sc` (packets), `g`, `uq` and `ug` replies removed or given each of a set of hostile
//! values, exhaustively, then random combinations (`proptest`, `HOSTILE_CASES`).

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

// ---- hostile replies, generated ----

/// Values a hostile server puts where a field should be: every JSON type, out-of-range and
/// huge numbers, empty, malformed and oversized strings, deep and long arrays.
fn hostile(i: usize) -> serde_json::Value {
    use serde_json::json;
    let deep = (0..64).fold(json!(0), |v, _| json!([v]));
    let values = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(u64::MAX),
        json!((1u64 << 53) + 1),
        json!(1.5e308),
        json!(-0.5),
        json!(""),
        json!("AAAAAAAA"),
        json!("!!! not base64 ~~~"),
        json!("A".repeat(200_000)),
        json!([]),
        json!({}),
        deep,
        json!(vec![0; 5_000]),
        json!({"a": "t", "t": {"f": [{"h": "x"}]}}),
        json!("ÿ\u{0}\u{FFFF}"),
    ];
    values[i % values.len()].clone()
}

const HOSTILE_KINDS: usize = 20;

/// Applies one mutation: walks into `v` by `path` (indices taken modulo each level's size)
/// and removes what it reaches (`kind` 0) or replaces it with a hostile value.
fn mutate(v: &mut serde_json::Value, path: &[usize], kind: usize) {
    use serde_json::Value;
    let Some((&step, rest)) = path.split_first() else {
        if kind != 0 {
            *v = hostile(kind - 1);
        }
        return;
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let key = m.keys().nth(step % m.len()).cloned().unwrap_or_default();
            if rest.is_empty() {
                if kind == 0 {
                    m.remove(&key);
                } else {
                    m.insert(key, hostile(kind - 1));
                }
            } else if let Some(child) = m.get_mut(&key) {
                mutate(child, rest, kind);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = step % a.len();
            if rest.is_empty() {
                if kind == 0 {
                    a.remove(i);
                } else {
                    a[i] = hostile(kind - 1);
                }
            } else {
                mutate(&mut a[i], rest, kind);
            }
        }
        _ => mutate(v, &[], kind),
    }
}

/// Every position in `v` (objects' keys and arrays' elements at every depth), as the index
/// paths [`mutate`] takes.
fn all_paths(v: &serde_json::Value) -> Vec<Vec<usize>> {
    use serde_json::Value;
    let mut out = Vec::new();
    let children: Vec<&Value> = match v {
        Value::Object(m) => m.values().collect(),
        Value::Array(a) => a.iter().collect(),
        _ => return out,
    };
    for (i, c) in children.into_iter().enumerate() {
        out.push(vec![i]);
        for mut p in all_paths(c) {
            p.insert(0, i);
            out.push(p);
        }
    }
    out
}

/// Well-formed replies of the commands under test, to be mutated.
fn template(which: usize) -> serde_json::Value {
    use serde_json::json;
    let file_key = b64::encode(&[7u8; 32]);
    let folder_key = b64::encode(&[8u8; 16]);
    let nodes = json!([
        {"h": "ROOTROOT", "p": "", "u": "UUUUUUUUUUU", "t": 2, "a": "", "k": "", "ts": 1},
        {"h": "RUBBISH1", "p": "", "u": "UUUUUUUUUUU", "t": 4, "a": "", "k": "", "ts": 1},
        {"h": "FOLDER01", "p": "ROOTROOT", "u": "UUUUUUUUUUU", "t": 1, "a": "QUFBQQ",
         "k": format!("UUUUUUUUUUU:{folder_key}"), "ts": 2},
        {"h": "FILE0001", "p": "FOLDER01", "u": "UUUUUUUUUUU", "t": 0, "a": "QUFBQQ",
         "k": format!("UUUUUUUUUUU:{file_key}"), "s": 1234, "ts": 3,
         "fa": "901:0*AAAAAAAAAAA/901:1*BBBBBBBBBBB/901:8*COXwfdF5an8/901:9*CCCCCCCCCCC"},
        {"h": "SHARED01", "p": "XXXXXXXX", "u": "OOOOOOOOOOO", "su": "OOOOOOOOOOO", "r": 1,
         "t": 1, "a": "QUFBQQ", "k": format!("SHARED01:{folder_key}"), "ts": 4},
    ]);
    match which % 5 {
        0 => json!({
            "f": nodes,
            "f2": [{"h": "FILEOLD1", "p": "FILE0001", "u": "UUUUUUUUUUU", "t": 0, "a": "QUFBQQ",
                    "k": format!("UUUUUUUUUUU:{file_key}"), "s": 10, "ts": 2}],
            "ok": [{"h": "FOLDER01", "ha": folder_key, "k": folder_key}],
            "u": [{"u": "OOOOOOOOOOO", "m": "o@example.com", "c": 1}],
            "s": [{"h": "FOLDER01", "u": "OOOOOOOOOOO", "r": 1, "ts": 5}],
            "sn": "SNSNSNSNSNS"
        }),
        1 => json!({
            "a": [
                {"a": "t", "i": "other", "ou": "OOOOOOOOOOO",
                 "t": {"f": [nodes[3].clone(), nodes[2].clone()]}},
                {"a": "u", "n": "FILE0001", "u": "UUUUUUUUUUU", "at": "QkJCQg", "ts": 9},
                {"a": "fa", "n": "FILE0001", "fa": "902:0*DDDDDDDDDDD/902:8*EEEEEEEEEEE"},
                {"a": "d", "n": "FOLDER01", "i": "other"},
                {"a": "s2", "n": "FOLDER01", "u": "OOOOOOOOOOO", "o": "UUUUUUUUUUU", "r": 1},
                {"a": "ua", "u": "UUUUUUUUUUU", "ua": ["^!keys"], "v": ["v1"]},
                {"a": "c", "u": [{"u": "OOOOOOOOOOO", "m": "o@example.com", "c": 1}]}
            ],
            "sn": "SNSNSNSNSN2"
        }),
        2 => json!({"g": "http://127.0.0.1:9/dl/x", "s": 1234, "at": "QUFBQQ"}),
        3 => json!({"mstrg": 1u64 << 40, "cstrg": 12345, "mxfer": 1u64 << 30, "caxfer": 5}),
        _ => json!({"u": "UUUUUUUUUUU", "email": "a@example.com", "privk": "QUFBQQ", "name": "A"}),
    }
}

/// Reads a node's file attribute list as the listings and `thumbnail` do (whatever it holds).
fn file_attributes(n: &mega_mount::tree::Node) {
    use mega_mount::transfer::{fileattr, media};
    if let Some(fa) = &n.fa {
        let _ = fileattr::kinds(fa);
        let _ = fileattr::find(fa, fileattr::THUMBNAIL);
        if let Some(mega_mount::crypto::NodeKey::File(k)) = &n.key {
            let _ = media::decode(fa, k);
        }
    }
}

/// The peak resident memory of this process so far (VmHWM), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Generated hostile replies to `f`, `sc` (the `t`, `u`, `d`, `s2`, `ua`, `c` packets), `g`,
/// `uq` and `ug`: fields removed, of every wrong type, huge, out of range. Each is answered
/// by a typed error or a lenient skip, within a bound of time — never a panic, a hang, or
/// an allocation the server sized (the peak memory of the whole run stays small, and every
/// node size the tree accepted is within MEGA's 2^53 − 1).
#[test]
fn generated_hostile_replies_are_errors_or_skips() {
    use mega_mount::api::commands::{FetchNodes, GetDownloadUrl, GetQuota, GetUser};
    use mega_mount::crypto::{Key128, MasterKey};
    use mega_mount::tree::{KeyRing, NodeTree, MAX_NODE_SIZE};
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use std::sync::{Arc, Mutex};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The reply the fake server gives next: to `/cs` (wrapped in a batch) or `/sc`.
    let body: Arc<Mutex<Vec<u8>>> = Arc::default();
    let served = body.clone();
    let url = rt.block_on(serve_with(Arc::new(move |_path: &str, _: &[u8]| {
        ok_json(&String::from_utf8_lossy(&served.lock().unwrap()))
    })));
    let keys = || KeyRing::new(MasterKey(Key128([5; 16])), "UUUUUUUUUUU".into(), None);
    let base_before = peak_rss();
    let cases: u32 = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0usize..5,
        proptest::collection::vec(
            (
                proptest::collection::vec(0usize..16, 1..6),
                0usize..HOSTILE_KINDS,
            ),
            1..4,
        ),
    );
    let case = |which: usize, mutations: &[(Vec<usize>, usize)]| -> Result<(), TestCaseError> {
        let mut v = template(which);
        for (path, kind) in mutations {
            mutate(&mut v, path, *kind);
        }
        let text = if which % 5 == 1 {
            v.to_string()
        } else {
            format!("[{v}]")
        };
        *body.lock().unwrap() = text.into_bytes();
        let api = Arc::new(api(&url));
        let outcome = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), async {
                match which % 5 {
                    0 => {
                        let cmd = FetchNodes {
                            c: 1,
                            ca: None,
                            r: None,
                        };
                        if let Ok(reply) = api.run(&cmd).await {
                            if let Ok((tree, _)) = NodeTree::from_fetch(&reply, keys()) {
                                for n in tree.iter() {
                                    if n.size > MAX_NODE_SIZE {
                                        return Err(format!("a node of {} bytes", n.size));
                                    }
                                    let _ = tree.path_of(&n.handle);
                                    let _ = tree.children(&n.handle);
                                    file_attributes(n);
                                }
                                let _ = tree.resolve("/a/b");
                            }
                        }
                    }
                    1 => {
                        let mut poller =
                            mega_mount::events::EventPoller::new(api.clone(), "SNSNSNSNSNS".into());
                        if let Ok(packets) = poller.next_batch().await {
                            let (reply, _) = {
                                *body.lock().unwrap() = format!("[{}]", template(0)).into_bytes();
                                let r = api
                                    .run(&FetchNodes {
                                        c: 1,
                                        ca: None,
                                        r: None,
                                    })
                                    .await
                                    .map_err(|e| format!("the good f failed: {e}"))?;
                                (r, ())
                            };
                            let (mut tree, _) = NodeTree::from_fetch(&reply, keys())
                                .map_err(|e| format!("the good tree failed: {e}"))?;
                            let _ = tree.apply(&packets, Some("mine"));
                            for n in tree.iter() {
                                file_attributes(n);
                                if n.size > MAX_NODE_SIZE {
                                    return Err(format!("a node of {} bytes", n.size));
                                }
                            }
                        }
                    }
                    2 => {
                        let _ = api.run(&GetDownloadUrl::node("FILE0001", false)).await;
                        let key = mega_mount::crypto::FileKey {
                            aes: [1; 16],
                            nonce: [2; 8],
                            meta_mac: [3; 8],
                        };
                        let link = mega_mount::link::file_link("FILE0001", &key);
                        if let Ok(f) = mega_mount::client::public_file(&api, &link, false).await {
                            if f.size > MAX_NODE_SIZE {
                                return Err(format!("a public file of {} bytes", f.size));
                            }
                        }
                    }
                    3 => {
                        let _ = api.run(&GetQuota { strg: 1, xfer: 1 }).await;
                    }
                    _ => {
                        let _ = api.run(&GetUser { v: 1 }).await;
                    }
                }
                Ok(())
            })
            .await
        });
        match outcome {
            Err(_) => Err(TestCaseError::fail(format!("no answer within 20 s: {v}"))),
            Ok(Err(e)) => Err(TestCaseError::fail(e)),
            Ok(Ok(())) => Ok(()),
        }
    };
    // Every single mutation of every template, exhaustively: each position removed or given
    // each hostile value.
    for which in 0..5 {
        for path in all_paths(&template(which)) {
            for kind in 0..HOSTILE_KINDS {
                if let Err(e) = case(which, &[(path.clone(), kind)]) {
                    panic!("template {which}, {path:?} → kind {kind}: {e}");
                }
            }
        }
    }
    // And random combinations of several.
    let result = runner.run(&strategy, |(which, mutations)| case(which, &mutations));
    if let Err(e) = result {
        panic!("{e}");
    }
    let grew = peak_rss().saturating_sub(base_before);
    assert!(
        grew < 256 << 20,
        "the peak memory grew by {} MB over the hostile replies",
        grew >> 20
    );
}
