//! mega-testserver run as a shared machine's service: one test per finding of the security
//! review (each failed on the server before it was hardened), driven with raw HTTP on
//! 127.0.0.1 as an attacker on the same machine would.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

mod common;

use common::*;
use mega_testserver::{crypto, Limits, UserOptions};
use serde_json::{json, Value};

/// 1. The admin endpoints need the admin token.
#[tokio::test]
async fn admin_endpoints_need_the_token() {
    let env = start(Limits::default()).await;
    env.account("a@x.example", 1000).await;
    let quota = r#"{"email": "a@x.example", "bytes": 0}"#;
    assert_eq!(env.admin("quota", None, quota).await, 401);
    assert_eq!(env.admin("quota", Some("wrong-token"), quota).await, 401);
    assert_eq!(
        env.admin(
            "quota",
            None,
            r#"{"email": "nobody@x.example", "bytes": 0}"#
        )
        .await,
        401,
        "no answer that tells whether an account exists"
    );
    assert_eq!(
        env.admin("faults", None, r#"{"corrupt_downloads": true}"#)
            .await,
        401
    );
    assert!(!env.server.faults().get().corrupt_downloads);
    let get = env
        .http
        .get(format!("{}__admin/faults", env.server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 401);
    let token = env.server.admin_token().to_string();
    assert_eq!(env.admin("quota", Some(&token), quota).await, 200);
    let file = env.data.join("admin-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// 2. A reply is never handed to another visitor, nor after its link was revoked or its
/// session logged out.
#[tokio::test]
async fn cached_replies_do_not_leak_across_visitors_links_or_logouts() {
    let env = start(Limits::default()).await;
    let sid = env.account("owner@x.example", 1 << 30).await;
    let root = env.root(&sid).await;
    let folder = env.mkdir(&sid, &root).await;
    let ph = env.export(&sid, &folder).await;
    let f = json!([{"a": "f", "c": 1, "ca": 1, "r": 1}]);
    let tree = env.cs_raw(&format!("id=777&n={ph}"), &f).await;
    assert!(tree.contains(&folder), "{tree}");
    // Another visitor repeating the request id and body, without the link: nothing.
    assert!(!env.cs_raw("id=777", &f).await.contains(&folder));
    // The link is revoked: the same request no longer gets the tree.
    let revoke = json!({"a": "s2", "n": folder, "s": [{"u": "EXP"}]});
    assert_eq!(env.run(&sid, revoke).await, json!(0));
    let again = env.cs_raw(&format!("id=777&n={ph}"), &f).await;
    assert!(!again.contains(&folder), "served after revocation: {again}");
    // A logged-out session's earlier replies are gone with it.
    let query = format!("id=778&sid={sid}");
    let first = env.cs_raw(&query, &json!([{"a": "f", "c": 1}])).await;
    assert!(first.contains(&folder));
    assert_eq!(env.run(&sid, json!({"a": "sml"})).await, json!(0));
    assert_eq!(
        env.cs_raw(&query, &json!([{"a": "f", "c": 1}])).await,
        "-15"
    );
}

/// 3. Batches and replies are bounded, and so is what the server keeps.
#[tokio::test]
async fn batches_replies_and_the_reply_cache_are_bounded() {
    let env = start(Limits {
        max_commands: 50,
        max_reply_bytes: 4000,
        reply_cache_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    let sid = env.account("big@x.example", 1 << 30).await;
    let root = env.root(&sid).await;
    for _ in 0..10 {
        env.mkdir(&sid, &root).await;
    }
    let f = json!({"a": "f", "c": 1});
    let too_many = Value::Array(vec![f.clone(); 51]);
    assert_eq!(
        env.cs_raw(&format!("id=1&sid={sid}"), &too_many).await,
        "-6"
    );
    // Within the count, but the reply would pass 4,000 bytes: the rest answer ETOOMANY.
    let r: Value = serde_json::from_str(
        &env.cs_raw(
            &format!("id=2&sid={sid}"),
            &Value::Array(vec![f.clone(); 20]),
        )
        .await,
    )
    .unwrap();
    let r = r.as_array().unwrap();
    assert!(r[0].get("f").is_some());
    assert_eq!(r.last().unwrap(), &json!(-6));
    assert!(serde_json::to_string(r).unwrap().len() <= 4000);
    // Many distinct requests: the cache stays within its bound.
    for i in 0..100 {
        env.cs_raw(&format!("id=c{i}&sid={sid}"), &json!([f])).await;
    }
    assert!(env.server.reply_cache_bytes() <= 64 * 1024);
}

/// 4. Password guessing and 2FA sweeping are throttled; a 2FA code works once.
#[tokio::test]
async fn logins_are_throttled_and_2fa_codes_work_once() {
    let env = start(Limits {
        login_failures: 5,
        ..Default::default()
    })
    .await;
    env.account("victim@x.example", 1000).await;
    let wrong = json!({"a": "us", "user": "victim@x.example", "uh": crypto::b64e(&[0u8; 8])});
    let right = json!({"a": "us", "user": "victim@x.example", "uh": uh("victim@x.example")});
    let mut batch = vec![wrong.clone(); 30];
    batch.push(right.clone());
    let r: Value = serde_json::from_str(&env.cs_raw("id=1", &Value::Array(batch)).await).unwrap();
    let r = r.as_array().unwrap();
    assert_eq!(r[0], json!(-9));
    assert_eq!(r[29], json!(-4), "throttled after 5 failures");
    assert_eq!(
        r[30],
        json!(-4),
        "even the right password, during the lockout"
    );

    // 2FA: many wrong codes and then the right one in one batch get nowhere.
    let secret = "JBSWY3DPEHPK3PXP";
    env.server
        .add_user(
            "mfa@x.example",
            PASSWORD,
            UserOptions {
                v1: true,
                totp_secret: Some(secret.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let now = mega_testserver::store::now() as u64;
    let code = crypto::totp(secret, now).unwrap();
    let with =
        |c: &str| json!({"a": "us", "user": "mfa@x.example", "uh": uh("mfa@x.example"), "mfa": c});
    let mut sweep: Vec<Value> = (0..40)
        .map(|n| format!("{:06}", (n * 7919) % 1_000_000))
        .filter(|c| *c != code)
        .map(|c| with(&c))
        .collect();
    sweep.push(with(&code));
    let r: Value = serde_json::from_str(&env.cs_raw("id=2", &Value::Array(sweep)).await).unwrap();
    assert_eq!(r.as_array().unwrap().last().unwrap(), &json!(-4));

    // A code is used once (on a fresh server, so the throttle above does not interfere).
    let env = start(Limits::default()).await;
    env.server
        .add_user(
            "mfa@x.example",
            PASSWORD,
            UserOptions {
                v1: true,
                totp_secret: Some(secret.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let code = crypto::totp(secret, mega_testserver::store::now() as u64).unwrap();
    let first: Value =
        serde_json::from_str(&env.cs_raw("id=3", &json!([with(&code)])).await).unwrap();
    assert!(first[0].get("csid").is_some(), "{first}");
    let replay: Value =
        serde_json::from_str(&env.cs_raw("id=4", &json!([with(&code)])).await).unwrap();
    assert_eq!(replay[0], json!(-26), "the same code again");
}

/// 5. The data directory is private and holds no usable session id.
#[tokio::test]
async fn the_data_directory_is_private_and_holds_no_session_id() {
    let env = start(Limits::default()).await;
    let sid = env.account("p@x.example", 1 << 20).await;
    let root = env.root(&sid).await;
    // An upload, so that a blob exists.
    let u = env.run(&sid, json!({"a": "u", "s": 16, "v": 2})).await;
    let url = u["p"].as_str().unwrap().to_string();
    let token = env
        .http
        .post(format!("{url}/0"))
        .body(vec![7u8; 16])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(token.len(), 36);
    let node =
        json!({"h": crypto::b64e(&token), "t": 0, "a": "QUFBQQ", "k": "QUFBQUFBQUFBQUFBQUFBQQ"});
    let p = env
        .run(&sid, json!({"a": "p", "t": root, "n": [node]}))
        .await;
    assert!(p.get("f").is_some(), "{p}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.data), 0o700);
    assert_eq!(mode(&env.data.join("mega.sqlite")), 0o600);
    for dir in ["blobs", "uploads"] {
        assert_eq!(mode(&env.data.join(dir)), 0o700);
        for f in std::fs::read_dir(env.data.join(dir)).unwrap() {
            assert_eq!(mode(&f.unwrap().path()), 0o600);
        }
    }
    for f in std::fs::read_dir(&env.data).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(sid.len()).any(|w| w == sid.as_bytes()),
                "{} holds a live session id",
                p.display()
            );
        }
    }
}

/// 6. Open upload slots count against the quota, sizes cannot wrap, stale slots go.
#[tokio::test]
async fn uploads_are_held_to_the_quota() {
    let env = start(Limits {
        upload_lifetime: Duration::from_secs(1),
        max_open_uploads: 3,
        ..Default::default()
    })
    .await;
    let sid = env.account("q@x.example", 1000).await;
    let first = env.run(&sid, json!({"a": "u", "s": 900})).await;
    assert!(first.get("p").is_some());
    assert_eq!(
        env.run(&sid, json!({"a": "u", "s": 900})).await,
        json!(-17),
        "the open slot reserves its 900 bytes"
    );
    assert_eq!(
        env.run(&sid, json!({"a": "u", "s": i64::MAX})).await,
        json!(-2),
        "no size that wraps the sum"
    );
    for _ in 0..2 {
        assert!(env
            .run(&sid, json!({"a": "u", "s": 1}))
            .await
            .get("p")
            .is_some());
    }
    assert_eq!(env.run(&sid, json!({"a": "u", "s": 1})).await, json!(-6));
    // Stale slots are removed, with their files, and their URLs stop working.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(env.server.sweep(), 3);
    assert_eq!(
        std::fs::read_dir(env.data.join("uploads")).unwrap().count(),
        0
    );
    let url = first["p"].as_str().unwrap();
    let r = env
        .http
        .post(format!("{url}/0"))
        .body(vec![0u8; 16])
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "-8");
}

/// 7. The event channel's wait URLs tell nobody else when an account changes, and a folder
/// link's tree carries only what a visitor needs.
#[tokio::test]
async fn no_side_channels_in_wait_urls_or_folder_links() {
    let env = start(Limits::default()).await;
    let sid = env.account("w@x.example", 1 << 20).await;
    let f = env.run(&sid, json!({"a": "f", "c": 1})).await;
    let sn = f["sn"].as_str().unwrap().to_string();
    let user = f["f"][0]["u"].as_str().unwrap().to_string();
    // The old guessable form does not exist.
    let guess = env
        .http
        .get(format!("{}sc/wait/{user}/{sn}", env.server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(guess.status().as_u16(), 404);
    // A made-up token answers at once, whatever happens to the account.
    let t0 = std::time::Instant::now();
    let made_up = env
        .http
        .get(format!("{}sc/wait/{}", env.server.base_url(), rand_id()))
        .send()
        .await
        .unwrap();
    assert!(made_up.status().is_success());
    assert!(t0.elapsed() < Duration::from_secs(1));
    // The real one, from `sc` with the session, blocks (until the timeout) and works once.
    let sc: Value = serde_json::from_str(
        &env.http
            .post(format!("{}sc?sn={sn}&sid={sid}", env.server.base_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let w = sc["w"].as_str().unwrap().to_string();
    assert!(!w.contains(&user), "the wait URL names the account: {w}");
    let t0 = std::time::Instant::now();
    env.http.get(&w).send().await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(2), "it waited");
    let t0 = std::time::Instant::now();
    env.http.get(&w).send().await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1), "used once");

    let root = env.root(&sid).await;
    let folder = env.mkdir(&sid, &root).await;
    env.mkdir(&sid, &folder).await;
    let ph = env.export(&sid, &folder).await;
    let tree: Value = serde_json::from_str(
        &env.cs_raw(
            &format!("id=1&n={ph}"),
            &json!([{"a": "f", "c": 1, "ca": 1, "r": 1}]),
        )
        .await,
    )
    .unwrap();
    let tree = &tree[0];
    assert!(tree.get("sn").is_none(), "the owner's event cursor");
    for n in tree["f"].as_array().unwrap() {
        assert!(n.get("u").is_none(), "the owner's handle: {n}");
        if n["h"] == json!(folder) {
            assert_eq!(n["p"], json!(""), "the shared folder's parent: {n}");
        }
    }
}

/// 8. A command that fails changes nothing.
#[tokio::test]
async fn failing_commands_change_nothing() {
    let env = start(Limits::default()).await;
    let sid = env.account("t@x.example", 1 << 20).await;
    let root = env.root(&sid).await;
    let count = |f: &Value| f["f"].as_array().unwrap().len();
    let before = env.run(&sid, json!({"a": "f", "c": 1})).await;
    // `p`: a valid folder and a malformed element (a bad upload token alone fails only its
    // own element, as MEGA answers it: see `tests/wire.rs`).
    let p = json!({"a": "p", "t": root, "n": [
        {"h": "xxxxxxxx", "t": 1, "a": "QUFBQQ", "k": "QUFBQUFBQUFBQUFBQUFBQQ"},
        {"h": crypto::b64e(&[9u8; 36]), "t": 0, "a": "QUF!", "k": "QUFBQUFBQUFBQUFBQUFBQQ"}]});
    assert_eq!(env.run(&sid, p).await, json!(-2));
    let after = env.run(&sid, json!({"a": "f", "c": 1})).await;
    assert_eq!(count(&after), count(&before), "no folder was created");
    assert_eq!(after["sn"], before["sn"], "and no event was sent");
    // `m` with a bad `cr`: the node stays where it was.
    let a = env.mkdir(&sid, &root).await;
    let b = env.mkdir(&sid, &root).await;
    let m = json!({"a": "m", "n": a, "t": b, "cr": [["NOSUCHSH"], [a], [0, 0, "QUFBQQ"]]});
    assert_ne!(env.run(&sid, m).await, json!(0));
    let f = env.run(&sid, json!({"a": "f", "c": 1})).await;
    let node_a = f["f"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["h"] == json!(a))
        .unwrap();
    assert_eq!(node_a["p"], json!(root), "not moved");
    // `s2` with a bad `cr`: not exported.
    let ok = crypto::b64e(&[1u8; 16]);
    let s2 = json!({"a": "s2", "n": a, "s": [{"u": "EXP", "r": 0}], "ok": ok, "ha": ok,
                    "cr": [["NOSUCHSH"], [a], [0, 0, "QUFBQQ"]]});
    assert_ne!(env.run(&sid, s2).await, json!(0));
    let f = env.run(&sid, json!({"a": "f", "c": 1})).await;
    assert!(f["ok"].as_array().unwrap().is_empty(), "not shared: {f}");
    // A completion token shown by another account is not used up.
    let u = env.run(&sid, json!({"a": "u", "s": 16, "v": 2})).await;
    let token = env
        .http
        .post(format!("{}/0", u["p"].as_str().unwrap()))
        .body(vec![1u8; 16])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let file =
        json!({"h": crypto::b64e(&token), "t": 0, "a": "QUFBQQ", "k": "QUFBQUFBQUFBQUFBQUFBQQ"});
    let thief = env.account("thief@x.example", 1 << 20).await;
    let thief_root = env.root(&thief).await;
    let stolen = env
        .run(
            &thief,
            json!({"a": "p", "t": thief_root, "n": [file.clone()]}),
        )
        .await;
    assert_eq!(stolen, json!(-11));
    let mine = env
        .run(&sid, json!({"a": "p", "t": root, "n": [file]}))
        .await;
    assert!(
        mine.get("f").is_some(),
        "the owner's token still works: {mine}"
    );
}

/// 9. No answer tells whether an account exists; sessions and download URLs expire.
#[tokio::test]
async fn no_account_oracles_and_everything_expires() {
    let env = start(Limits {
        session_idle: Duration::from_secs(1),
        url_lifetime: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    env.server
        .add_user("v2@x.example", PASSWORD, UserOptions::default())
        .await
        .unwrap();
    let us0 = |e: &str| json!([{"a": "us0", "user": e}]);
    let real: Value =
        serde_json::from_str(&env.cs_raw("id=1", &us0("v2@x.example")).await).unwrap();
    let fake: Value =
        serde_json::from_str(&env.cs_raw("id=2", &us0("ghost@x.example")).await).unwrap();
    assert_eq!(real[0]["v"], json!(2));
    assert_eq!(
        fake[0]["v"],
        json!(2),
        "an unknown e-mail looks like an account"
    );
    assert_eq!(
        fake[0]["s"].as_str().unwrap().len(),
        real[0]["s"].as_str().unwrap().len()
    );
    let fake2: Value =
        serde_json::from_str(&env.cs_raw("id=3", &us0("ghost@x.example")).await).unwrap();
    assert_eq!(fake, fake2, "and the same every time");
    let mfag = |e: &str| json!([{"a": "mfag", "e": e}]);
    assert_eq!(
        env.cs_raw("id=4", &mfag("ghost@x.example")).await,
        env.cs_raw("id=5", &mfag("v2@x.example")).await
    );

    // A download URL stops working when its session logs out, and after its lifetime.
    let sid = env.account("e@x.example", 1 << 20).await;
    let root = env.root(&sid).await;
    let u = env.run(&sid, json!({"a": "u", "s": 16, "v": 2})).await;
    let token = env
        .http
        .post(format!("{}/0", u["p"].as_str().unwrap()))
        .body(vec![1u8; 16])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let file =
        json!({"h": crypto::b64e(&token), "t": 0, "a": "QUFBQQ", "k": "QUFBQUFBQUFBQUFBQUFBQQ"});
    let p = env
        .run(&sid, json!({"a": "p", "t": root, "n": [file]}))
        .await;
    let h = p["f"][0]["h"].as_str().unwrap().to_string();
    let g = env.run(&sid, json!({"a": "g", "g": 1, "n": h})).await;
    let url = g["g"].as_str().unwrap().to_string();
    assert_eq!(
        env.http.get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        env.http.get(&url).send().await.unwrap().status().as_u16(),
        403,
        "expired"
    );
    // The session was idle for more than a second: it ended.
    assert_eq!(env.run(&sid, json!({"a": "ug"})).await, json!(-15));
    // A fresh session's URL dies with its logout.
    let sid = env.server.open_session("e@x.example").unwrap();
    let g = env.run(&sid, json!({"a": "g", "g": 1, "n": h})).await;
    let url = g["g"].as_str().unwrap().to_string();
    assert_eq!(env.run(&sid, json!({"a": "sml"})).await, json!(0));
    assert_eq!(
        env.http.get(&url).send().await.unwrap().status().as_u16(),
        403
    );
}
