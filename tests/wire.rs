//! Wire-level shape of mega-testserver's replies, for the third-party clients that depend on
//! details our own client does not exercise (`MEGA-PROTOCOL.md` §13): download URLs by GET and
//! POST, with and without a range, ranges clamped like mega-rs needs; upload tokens as text
//! when `u` has no `v` (go-mega, mega.py, mega-rs); `"0"` chunk acks with `?d=`; `a` with
//! `attr`+`key`; bare `0` results; `a` then `i` first in packets and `sn` last in `sc` replies.

#![allow(clippy::unwrap_used)]

mod common;

use common::Env;
use mega_mount::crypto::{attr, b64, FileKey, NodeKey};
use serde_json::{json, Value};

async fn setup() -> (Env, mega_mount::Client) {
    let env = Env::start().await;
    let c = env.account("wire@example.com").await;
    (env, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_url_forms() {
    let (_env, c) = setup().await;
    let root = c.root().unwrap().handle;
    let body: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let f = c
        .upload(&root, "f", &mut &body[..], 1000, 0, None)
        .await
        .unwrap();
    let g = c
        .api()
        .call(json!({"a": "g", "g": 1, "n": f.handle.0}))
        .await
        .unwrap();
    assert_eq!(g["s"], json!(1000));
    assert!(g["at"].is_string());
    let url = g["g"].as_str().unwrap();
    let http = c.api().http();
    // mega.py: plain GET, whole file.
    assert_eq!(
        http.get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        1000
    );
    // megatools/SDK: POST with an empty body and an inclusive range.
    let r = http.post(format!("{url}/10-19")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 10);
    // mega-rs asks for 0-size (one past the end): clamped.
    let r = http.get(format!("{url}/0-1000")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
    let r = http.get(format!("{url}/5000-6000")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 416);
    // Info only (no `g`): no URL.
    let info = c
        .api()
        .call(json!({"a": "g", "n": f.handle.0}))
        .await
        .unwrap();
    assert!(info.get("g").is_none() && info["s"] == json!(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_without_v_gives_a_text_token_and_d_acks_with_zero() {
    let (_env, c) = setup().await;
    let root = c.root().unwrap().handle;
    let size = 200_000usize;
    let u = c.api().call(json!({"a": "u", "s": size})).await.unwrap();
    let url = u["p"].as_str().unwrap();
    let http = c.api().http();
    let data = vec![0x5au8; size];
    // Second piece first (out of order), with the SDK's `?d=` checksum: acked with "0".
    let tail = &data[131_072..];
    let d = b64::encode(&mega_mount::crypto::upload_checksum(tail));
    let r = http
        .post(format!("{url}/131072?d={d}"))
        .body(tail.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0");
    // A bad checksum is refused with EKEY.
    let r = http
        .post(format!("{url}/0?c=AAAAAAAAAAAAAAAA"))
        .body(data[..131_072].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"-14");
    let r = http
        .post(format!("{url}/0"))
        .body(data[..131_072].to_vec())
        .send()
        .await
        .unwrap();
    let token = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
    assert_eq!(token.len(), 36, "text token: 36 base64 characters");
    assert!(b64::decode(&token, "t").is_ok());
    // `p` accepts the text token verbatim (as go-mega and mega.py send it).
    let key = NodeKey::File(FileKey::random());
    let a = b64::encode(&attr::encrypt(
        &key.attr_key(),
        json!({"n": "text-token"}).as_object().unwrap(),
    ));
    let k = b64::encode(&c.session().master_key.0.wrap(&key.raw()));
    let r = c
        .api()
        .call(json!({"a": "p", "t": root.0, "n": [{"h": token, "t": 0, "a": a, "k": k, "fa": null}], "i": "abcdefghij"}))
        .await
        .unwrap();
    assert_eq!(r["f"][0]["s"], json!(size));
    // Tokens are single-use.
    let again = c
        .api()
        .call(json!({"a": "p", "t": root.0, "n": [{"h": token, "t": 0, "a": a, "k": k}]}))
        .await;
    assert!(again.is_err());
}

/// One element of `p` with a bad upload token fails alone, as MEGA answers it: the others
/// are made and the reply's `e` names the failed ones by position (`{"1":-9}`, read by
/// `sdk:CommandPutNodes`); a token twice in one request makes one node. With no element
/// left, the request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_nodes_answers_for_each_element() {
    let (_env, c) = setup().await;
    let root = c.root().unwrap().handle;
    let http = c.api().http();
    let mut elements = Vec::new();
    let mut token = String::new();
    for i in 0..2 {
        let data = vec![i as u8 + 1; 1000];
        let u = c
            .api()
            .call(json!({"a": "u", "s": data.len()}))
            .await
            .unwrap();
        let url = u["p"].as_str().unwrap();
        let r = http
            .post(format!("{url}/0"))
            .body(data)
            .send()
            .await
            .unwrap();
        token = String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap();
        let key = NodeKey::File(FileKey::random());
        let a = b64::encode(&attr::encrypt(
            &key.attr_key(),
            json!({"n": format!("f{i}")}).as_object().unwrap(),
        ));
        let k = b64::encode(&c.session().master_key.0.wrap(&key.raw()));
        elements.push(json!({"h": token, "t": 0, "a": a, "k": k}));
    }
    let mut bogus = elements[0].clone();
    bogus["h"] = json!("A".repeat(36));
    let twice = elements[1].clone();
    let n = json!([elements[0], bogus, elements[1], twice]);
    // Into an exported folder, with `cr` naming the elements by position (as the SDK does):
    // the refused ones still count, their keys are skipped.
    let folder = c.mkdir(&root, "exported").await.unwrap().handle;
    c.export(&folder).await.unwrap();
    let k = "QUFBQUFBQUFBQUFBQUFBQQ";
    let cr = json!([[folder.0], [], [0, 0, k, 0, 1, k, 0, 2, k, 0, 3, k]]);
    let r = c
        .api()
        .call(json!({"a": "p", "t": folder.0, "n": n, "cr": cr}))
        .await
        .unwrap();
    assert_eq!(r["f"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["e"], json!({"1": -9, "3": -9}));
    // Every element refused: the request's error.
    let again = c
        .api()
        .call(json!({"a": "p", "t": folder.0, "n": [elements[1]]}))
        .await;
    assert!(again.is_err(), "{again:?}; the token {token} is used up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_attr_form_and_integer_results() {
    let (env, c) = setup().await;
    let root = c.root().unwrap().handle;
    let dir = c.mkdir(&root, "old").await.unwrap();
    let key = dir.key.clone().unwrap();
    let attr_b64 = b64::encode(&attr::encrypt(
        &key.attr_key(),
        json!({"n": "new"}).as_object().unwrap(),
    ));
    // rclone/go-mega, mega.py and mega-rs send `attr` + `key` + `i`.
    let r = c
        .api()
        .call(json!({"a": "a", "attr": attr_b64, "key": "ignored", "n": dir.handle.0, "i": "0123456789"}))
        .await
        .unwrap();
    assert_eq!(r, json!(0), "commands without payload return the number 0");
    let fresh = env.login("wire@example.com").await;
    assert!(fresh.resolve("/new").is_ok());
    let r = c
        .api()
        .call(json!({"a": "d", "n": dir.handle.0, "i": "0123456789"}))
        .await
        .unwrap();
    assert_eq!(r, json!(0));
    assert_eq!(
        c.api()
            .call(json!({"a": "log", "e": 99999, "m": "x"}))
            .await
            .unwrap(),
        json!(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_prelogin_shapes() {
    let (env, c) = setup().await;
    let f = c.api().call(json!({"a": "f", "c": 1})).await.unwrap();
    for k in ["f", "ok", "ok0", "s", "u", "sn"] {
        assert!(f.get(k).is_some(), "`f` reply lacks {k}");
    }
    assert_eq!(f["sn"].as_str().unwrap().len(), 11);
    let roots: Vec<&Value> = f["f"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["t"].as_i64() >= Some(2))
        .collect();
    assert_eq!(roots.len(), 3);
    for r in roots {
        assert_eq!(r["p"], json!(""));
        assert_eq!(r["a"], json!(""));
    }
    env.user(
        "v1wire@example.com",
        mega_testserver::UserOptions {
            v1: true,
            ..Default::default()
        },
    )
    .await;
    let pre = c
        .api()
        .call(json!({"a": "us0", "user": "v1wire@example.com"}))
        .await
        .unwrap();
    assert_eq!(
        pre,
        json!({"v": 1}),
        "v1 accounts: no `s` key at all (mega.py)"
    );
    let pre = c
        .api()
        .call(json!({"a": "us0", "user": "wire@example.com"}))
        .await
        .unwrap();
    assert_eq!(pre["v"], json!(2));
    assert_eq!(
        b64::decode(pre["s"].as_str().unwrap(), "s").unwrap().len(),
        32
    );
    // `ug` carries what megatools and mega-rs require.
    let ug = c.api().call(json!({"a": "ug"})).await.unwrap();
    for k in [
        "u",
        "s",
        "email",
        "name",
        "k",
        "c",
        "pubk",
        "privk",
        "ts",
        "firstname",
        "lastname",
    ] {
        assert!(ug.get(k).is_some(), "`ug` reply lacks {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_packets_put_a_and_i_first_and_sn_last() {
    let (env, c) = setup().await;
    let sn = c.api().call(json!({"a": "f", "c": 1})).await.unwrap()["sn"]
        .as_str()
        .unwrap()
        .to_string();
    let root = c.root().unwrap().handle;
    let dir = c.mkdir(&root, "x").await.unwrap();
    c.rename(&dir.handle, "y").await.unwrap();
    let sid = c.api().sid().unwrap();
    let url = format!("{}sc?sn={}&sid={}", env.server.base_url(), sn, sid.expose());
    let text = c
        .api()
        .http()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let echo = c.api().echo_id();
    assert!(
        text.contains(&format!("{{\"a\":\"t\",\"i\":\"{echo}\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{{\"a\":\"u\",\"i\":\"{echo}\"")),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    let last_key = v.as_object().unwrap().keys().next_back().unwrap().clone();
    assert_eq!(last_key, "sn");
    // Up to date: a wait URL, and no packets alongside it.
    let url = format!(
        "{}sc?sn={}&sid={}",
        env.server.base_url(),
        v["sn"].as_str().unwrap(),
        sid.expose()
    );
    let v: Value = serde_json::from_str(
        &c.api()
            .http()
            .post(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(v["w"].is_string() && v.get("a").is_none(), "{v}");
    // Bad sid: ESID, on both channels.
    let bad = format!("{}sc?sn={}&sid=nope", env.server.base_url(), sn);
    assert_eq!(
        c.api()
            .http()
            .get(&bad)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "-15"
    );
    let bad = format!("{}cs?id=1&sid=nope", env.server.base_url());
    let r = c
        .api()
        .http()
        .post(&bad)
        .body("[{\"a\":\"ug\"}]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "-15");
}

/// EBLOCKED: a blocked account's session can only ask `whyamiblocked`; the client asks and
/// puts the reason in the error, for an account blocked at login and one blocked (through the
/// admin endpoint) while a session is in use, which works again once unblocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_account_is_told_why() {
    use mega_mount::api::session::AuthError;
    use mega_mount::api::BlockReason;
    use mega_mount::Error;
    let env = Env::start().await;
    env.user(
        "b@example.com",
        mega_testserver::UserOptions {
            blocked: 200,
            ..Default::default()
        },
    )
    .await;
    let blocked = async {
        let c = env.login_result("b@example.com").await?;
        c.fetch().await?;
        Ok::<_, Error>(())
    }
    .await
    .unwrap_err();
    assert!(
        matches!(
            blocked,
            Error::Auth(AuthError::Blocked(Some(BlockReason::Copyright)))
        ),
        "{blocked:?}"
    );
    assert!(blocked.to_string().contains("copyright"), "{blocked}");

    let (env2, c) = setup().await;
    let admin = |reason: i64| {
        let url = format!("{}__admin/block", env2.server.base_url());
        let token = env2.server.admin_token().to_string();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .body(json!({"email": "wire@example.com", "reason": reason}).to_string())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    };
    admin(300).await;
    let e = c.fetch().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Auth(AuthError::Blocked(Some(BlockReason::TermsOfService)))
        ),
        "{e:?}"
    );
    admin(0).await;
    c.fetch().await.unwrap();
}

/// The Backup Centre's commands as the SDK and the web use them, with hostile inputs refused
/// and records kept per account: `sp` (register, update, arguments checked), `sphb`, `sf`,
/// `sr`; another account's id is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_centre_records_per_account() {
    use mega_mount::api::{ApiError, ErrorCode};
    let (env, c) = setup().await;
    let root = c.root().unwrap().handle;
    let dir = c.mkdir(&root, "synced").await.unwrap().handle;
    let code = |r: Result<Value, ApiError>| match r {
        Err(ApiError::Mega(code)) => code,
        other => panic!("expected an error code: {other:?}"),
    };
    let call = |v: Value| c.api().call(v);
    let dev = "PrG9Q5lH63YpmOVmzMLgmceREYsvQFecxPfaK1Bht_k";
    // Missing fields, bad types and values, a node that is not a folder of ours.
    for bad in [
        json!({"a": "sp", "t": 0, "h": dir.0}),
        json!({"a": "sp", "t": 9, "h": dir.0, "d": dev}),
        json!({"a": "sp", "t": "x", "h": dir.0, "d": dev}),
        json!({"a": "sp", "t": 0, "h": dir.0, "d": dev, "l": "not base64!"}),
        json!({"a": "sp", "t": 0, "h": dir.0, "d": dev, "s": 99}),
        json!({"a": "sp", "t": 0, "h": dir.0, "d": "", "e": "AA"}),
        json!({"a": "sp", "t": 0, "h": 5, "d": dev}),
    ] {
        assert_eq!(code(call(bad.clone()).await), ErrorCode::Args, "{bad}");
    }
    assert_eq!(
        code(call(json!({"a": "sp", "t": 0, "h": "AAAAAAAA", "d": dev})).await),
        ErrorCode::NotFound
    );
    let id = call(
        json!({"a": "sp", "t": 0, "h": dir.0, "d": dev, "s": 1, "ss": 0, "l": "AAAA", "e": "AAAA"}),
    )
    .await
    .unwrap();
    let id = id.as_str().unwrap().to_string();
    assert_eq!(id.len(), 11, "an 8-byte id: {id}");
    assert_eq!(
        call(json!({"a": "sp", "id": id, "s": 3})).await.unwrap(),
        json!(id)
    );
    assert_eq!(
        call(json!({"a": "sphb", "id": id, "s": 2, "p": 40, "qu": 3, "qd": 0, "lts": 1765000000}))
            .await
            .unwrap(),
        json!(0)
    );
    assert_eq!(
        code(call(json!({"a": "sphb", "id": id, "s": 2, "p": 101})).await),
        ErrorCode::Args
    );
    let all = call(json!({"a": "sf"})).await.unwrap();
    let rec = &all.as_array().unwrap()[0];
    assert_eq!(
        (&rec["t"], &rec["h"], &rec["d"], &rec["s"], &rec["l"]),
        (
            &json!(0),
            &json!(dir.0),
            &json!(dev),
            &json!(3),
            &json!("AAAA")
        )
    );
    assert_eq!(
        (&rec["hb"]["s"], &rec["hb"]["p"], &rec["hb"]["qu"]),
        (&json!(2), &json!(40), &json!(3))
    );
    assert!(
        rec["hb"]["ts"].as_i64().unwrap() > 1_700_000_000,
        "the server's receive time"
    );
    assert!(
        rec["dua"].as_str().unwrap().starts_with("mega-mount/"),
        "the registering client's user agent: {}",
        rec["dua"]
    );

    // Another account sees nothing of it and cannot touch it.
    let other = env.account("wire2@example.com").await;
    assert_eq!(
        other.api().call(json!({"a": "sf"})).await.unwrap(),
        json!([])
    );
    for v in [
        json!({"a": "sp", "id": id, "s": 1}),
        json!({"a": "sphb", "id": id, "s": 1}),
        json!({"a": "sr", "id": id}),
    ] {
        assert_eq!(
            code(other.api().call(v.clone()).await),
            ErrorCode::NotFound,
            "{v}"
        );
    }
    // Nor register a folder of ours.
    assert_eq!(
        code(
            other
                .api()
                .call(json!({"a": "sp", "t": 0, "h": dir.0, "d": dev}))
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(call(json!({"a": "sr", "id": id})).await.unwrap(), json!(0));
    assert_eq!(
        code(call(json!({"a": "sr", "id": id})).await),
        ErrorCode::NotFound
    );
    assert_eq!(call(json!({"a": "sf"})).await.unwrap(), json!([]));
}

/// `uq` as MEGA answers a free account under the transfer quota (`tah`, six hourly buckets,
/// `bt`, `tar`; no `mxfer`), and a server without one an allowance no one reaches; `g`
/// always says `tl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uq_and_g_carry_the_transfer_quota_fields() {
    let env = Env::start_with(|cfg| cfg.limits.transfer_quota = 1 << 30).await;
    let c = env.account("uq@example.com").await;
    let r = c
        .api()
        .call(json!({"a": "uq", "strg": 1, "xfer": 1, "pro": 1, "v": 2}))
        .await
        .unwrap();
    assert_eq!(r["tah"].as_array().map(Vec::len), Some(6), "{r}");
    assert!(
        r.get("bt").is_some() && r.get("tar").is_some() && r.get("mxfer").is_none(),
        "{r}"
    );
    let (_env, c) = setup().await;
    let r = c.api().call(json!({"a": "uq", "xfer": 1})).await.unwrap();
    assert!(
        r["mxfer"].as_i64().unwrap() > 0 && r.get("tah").is_none(),
        "{r}"
    );
    let root = c.root().unwrap().handle;
    let mut body: &[u8] = b"x";
    let f = c.upload(&root, "x", &mut body, 1, 0, None).await.unwrap();
    let g = c
        .api()
        .call(json!({"a": "g", "n": f.handle.0, "g": 1}))
        .await
        .unwrap();
    assert_eq!(g["tl"], json!(0));
}

/// Today's `p` (`MEGA-FILES-TRANSFERS.md` §6.1): `v:4`, `sm:1` and a pitag (`p`, five
/// characters) are accepted (and ignored) as the real service takes them from MEGA's SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_nodes_as_todays_sdk_sends_it() {
    let (env, c) = setup().await;
    let root = c.root().unwrap().handle;
    let key: [u8; 16] = rand::random();
    let a = b64::encode(&attr::encrypt(
        &key,
        json!({"n": "via-sdk-p"}).as_object().unwrap(),
    ));
    let k = b64::encode(&c.session().master_key.0.wrap(&key));
    let r: Value = c
        .api()
        .call(json!({"a": "p", "v": 4, "sm": 1, "p": "F.FD.", "t": root.0,
                     "n": [{"h": "xxxxxxxx", "t": 1, "a": a, "k": k}], "i": "0123456789"}))
        .await
        .unwrap();
    assert_eq!(r["f"].as_array().map(Vec::len), Some(1), "{r}");
    let fresh = env.login("wire@example.com").await;
    assert!(fresh.resolve("/via-sdk-p").is_ok());
}

/// File attributes on the wire (`MEGA-FILES-TRANSFERS.md` §1.5, §1.8): `ufa` sizes are
/// checked; a store POST goes to the URL as is (the SDK) or with `/<type>` (webclient,
/// megajs), must carry exactly the announced bytes and answers 8 raw bytes; a fetch answers
/// `handle ‖ len ‖ blob` records with `r:1`, else the index form, skipping unknown handles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_attributes_are_stored_and_fetched_in_both_forms() {
    let (_env, c) = setup().await;
    let http = c.api().http();
    for bad in [json!(15), json!(0), json!(16 * 1024 * 1024 + 16)] {
        let r = c.api().call(json!({"a": "ufa", "s": bad, "ssl": 0})).await;
        assert!(r.is_err(), "ufa s={bad}: {r:?}");
    }
    let mut handles = Vec::new();
    for (i, suffix) in ["", "/0"].iter().enumerate() {
        let blob = vec![i as u8 + 1; 32 * (i + 1)];
        let u = c
            .api()
            .call(json!({"a": "ufa", "s": blob.len(), "ssl": 0}))
            .await
            .unwrap();
        let url = format!("{}{suffix}", u["p"].as_str().unwrap());
        // The wrong length is refused (an error number, not a handle) and stores nothing.
        let r = http.post(&url).body(vec![0u8; 16]).send().await.unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"-2");
        let r = http.post(&url).body(blob.clone()).send().await.unwrap();
        let h = r.bytes().await.unwrap();
        assert_eq!(h.len(), 8, "8 raw bytes");
        // The slot is used up.
        let again = http.post(&url).body(blob.clone()).send().await.unwrap();
        assert_eq!(again.status().as_u16(), 404);
        handles.push((h.to_vec(), blob));
    }
    let unknown = vec![9u8; 8];
    let body: Vec<u8> = [&handles[1].0[..], &unknown, &handles[0].0].concat();
    let fah = b64::encode(&handles[0].0);
    // Streamed records.
    let u = c
        .api()
        .call(json!({"a": "ufa", "fah": fah, "ssl": 0, "r": 1}))
        .await
        .unwrap();
    let got = http
        .post(u["p"].as_str().unwrap())
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let records = mega_mount::transfer::fileattr::records(&got);
    assert_eq!(records.len(), 2);
    assert_eq!((records[0].0.to_vec(), records[0].1.to_vec()), handles[1]);
    assert_eq!((records[1].0.to_vec(), records[1].1.to_vec()), handles[0]);
    // The index form: 12-byte entries (handle, absolute offset), then the blobs.
    let u = c
        .api()
        .call(json!({"a": "ufa", "fah": fah, "ssl": 0}))
        .await
        .unwrap();
    let got = http
        .post(u["p"].as_str().unwrap())
        .body(body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let off = |i: usize| u32::from_le_bytes(got[i * 12 + 8..i * 12 + 12].try_into().unwrap());
    assert_eq!(&got[..8], &handles[1].0[..]);
    assert_eq!(off(0), 24, "the first blob follows the index");
    assert_eq!(&got[12..20], &handles[0].0[..]);
    assert_eq!(&got[24..off(1) as usize], &handles[1].1[..]);
    assert_eq!(&got[off(1) as usize..], &handles[0].1[..]);
}

/// The owner's view of a node's key after its folder was exported (`MEGA-FILES-TRANSFERS.md`
/// §6.5): its own pair first, then `<share handle>:<key under the share key>` — clients derived
/// from mega.py read an exported folder's key from that pair. Our client reads both forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_sees_one_key_pair_per_holder_after_an_export() {
    let (env, c) = setup().await;
    let root = c.root().unwrap().handle;
    let dir = c.mkdir(&root, "exported").await.unwrap().handle;
    let inner = c
        .upload(&dir, "in.txt", &mut &b"inside"[..], 6, 0, None)
        .await
        .unwrap();
    let outside = c
        .upload(&root, "out.txt", &mut &b"outside"[..], 7, 0, None)
        .await
        .unwrap();
    let before = c
        .api()
        .call(json!({"a": "f", "c": 1, "r": 1}))
        .await
        .unwrap();
    let k_of = |f: &Value, h: &str| -> String {
        f["f"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["h"] == h)
            .map(|n| n["k"].as_str().unwrap().to_string())
            .unwrap()
    };
    let me = c.session().user.clone();
    assert_eq!(k_of(&before, &inner.handle.0).split('/').count(), 1);
    c.export(&dir).await.unwrap();
    let after = c
        .api()
        .call(json!({"a": "f", "c": 1, "r": 1}))
        .await
        .unwrap();
    for h in [&inner.handle.0, &dir.0] {
        let k = k_of(&after, h);
        let pairs: Vec<&str> = k.split('/').collect();
        assert_eq!(pairs.len(), 2, "{h}: {k}");
        assert!(pairs[0].starts_with(&format!("{me}:")), "owner first: {k}");
        assert!(
            pairs[1].starts_with(&format!("{}:", dir.0)),
            "then the share: {k}"
        );
    }
    assert_eq!(k_of(&after, &outside.handle.0).split('/').count(), 1);
    // A fresh session decrypts everything from the multi-pair form.
    let again = env.login("wire@example.com").await;
    let n = again.resolve("/exported/in.txt").unwrap();
    assert_eq!(again.download_to_vec(&n.handle).await.unwrap(), b"inside");
}
