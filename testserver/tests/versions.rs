//! Today's accounts, server side: user attributes with versions (`uga`, `up2`, `upv`, `ua`
//! packets, `ug`) and file versions (`p` with `ov`, `f2`, `d` with `v: 1`, `dv`, `^!dv`,
//! `uq`), driven with raw commands as a third-party client would.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mega_testserver::{crypto, Limits};
use serde_json::{json, Value};

fn handles(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["h"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn node<'a>(list: &'a Value, h: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|n| n["h"] == json!(h))
}

#[tokio::test]
async fn user_attributes_are_versioned_and_announced() {
    let env = start(Limits::default()).await;
    // Made without a key manager, so that `^!keys` starts out missing.
    let alice = env.legacy_account("alice@x.example").await;
    let bob = env.account("bob@x.example", 1 << 30).await;
    let alice_h = env.run(&alice, json!({"a": "ug"})).await["u"]
        .as_str()
        .unwrap()
        .to_string();
    let sn = env.fetch(&alice).await["sn"].as_str().unwrap().to_string();
    let get = json!({"a": "uga", "u": alice_h, "ua": "^!keys", "v": 1});
    assert_eq!(env.run(&alice, get.clone()).await, json!(-9));

    // Created without a version element; a second write must name the version it read.
    let v1_blob = crypto::b64e(b"first");
    let r = env
        .run(&alice, json!({"a": "upv", "^!keys": [v1_blob]}))
        .await;
    let v1 = r["^!keys"].as_str().unwrap().to_string();
    let got = env.run(&alice, get.clone()).await;
    assert_eq!(got, json!({"av": v1_blob, "v": v1}));
    let v2_blob = crypto::b64e(b"second");
    assert_eq!(
        env.run(&alice, json!({"a": "upv", "^!keys": [v2_blob]}))
            .await,
        json!(-8),
        "an existing versioned attribute needs the version that was read"
    );
    assert_eq!(
        env.run(&alice, json!({"a": "upv", "^!keys": [v2_blob, "stale"]}))
            .await,
        json!(-8)
    );
    let r = env
        .run(&alice, json!({"a": "upv", "^!keys": [v2_blob, v1]}))
        .await;
    let v2 = r["^!keys"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    // The version read before the last write is stale now: a concurrent writer loses.
    assert_eq!(
        env.run(&alice, json!({"a": "upv", "^!keys": [v1_blob, v1]}))
            .await,
        json!(-8)
    );
    assert_eq!(env.run(&alice, get.clone()).await["av"], json!(v2_blob));
    // Without `v: 1` the value alone.
    assert_eq!(
        env.run(&alice, json!({"a": "uga", "u": alice_h, "ua": "^!keys"}))
            .await,
        json!(v2_blob)
    );
    // Versioned attributes cannot be overwritten blindly.
    assert_eq!(
        env.run(&alice, json!({"a": "up2", "^!keys": v1_blob}))
            .await,
        json!(-2)
    );
    // Non-versioned ones with up2.
    let r = env
        .run(&alice, json!({"a": "up2", "^!dv": crypto::b64e(b"1")}))
        .await;
    assert!(r["^!dv"].is_string(), "{r}");
    env.run(
        &alice,
        json!({"a": "upv", "+puEd255": [crypto::b64e(&[7; 32])]}),
    )
    .await;

    // ug carries them; another user reads only the public ones.
    let ug = env.run(&alice, json!({"a": "ug"})).await;
    assert_eq!(ug["^!keys"], json!({"av": v2_blob, "v": v2}));
    assert_eq!(
        env.run(&bob, get.clone()).await,
        json!(-9),
        "private attributes are the owner's"
    );
    // A new account has its key manager and public keys from the start.
    let bob_h = env.run(&bob, json!({"a": "ug"})).await["u"]
        .as_str()
        .unwrap()
        .to_string();
    let bob_keys = json!({"a": "uga", "u": bob_h, "ua": "^!keys", "v": 1});
    assert!(env.run(&bob, bob_keys.clone()).await["av"].is_string());
    assert_eq!(env.run(&alice, bob_keys).await, json!(-9));
    for name in ["+puEd255", "+puCu255", "+sigCu255", "+sigPubk"] {
        let r = env
            .run(&alice, json!({"a": "uga", "u": bob_h, "ua": name, "v": 1}))
            .await;
        assert!(r["av"].is_string(), "{name}: {r}");
    }
    let public = json!({"a": "uga", "u": alice_h, "ua": "+puEd255", "v": 1});
    assert_eq!(
        env.run(&bob, public).await["av"],
        json!(crypto::b64e(&[7; 32]))
    );
    let by_mail = json!({"a": "uga", "u": "alice@x.example", "ua": "+puEd255"});
    assert_eq!(env.run(&bob, by_mail).await, json!(crypto::b64e(&[7; 32])));

    // Every change was announced to the owner with a `ua` packet naming the new version.
    let (packets, _) = env.packets_after(&alice, &sn).await;
    let ua: Vec<&Value> = packets.iter().filter(|p| p["a"] == json!("ua")).collect();
    assert_eq!(ua.len(), 4, "{packets:?}");
    assert_eq!(ua[1]["ua"], json!(["^!keys"]));
    assert_eq!(ua[1]["v"], json!([v2]));
    assert_eq!(ua[1]["u"], json!(alice_h));
}

#[tokio::test]
async fn replaced_files_become_versions_in_f2() {
    let env = start(Limits::default()).await;
    let sid = env.account("v@x.example", 1 << 30).await;
    let root = env.root(&sid).await;
    let folder = env.mkdir(&sid, &root).await;
    let sn = env.fetch(&sid).await["sn"].as_str().unwrap().to_string();
    let a = handles(&env.put_file(&sid, &folder, b"one", None).await["f"])[0].clone();
    let b = handles(&env.put_file(&sid, &folder, b"two!", Some(&a)).await["f"])[0].clone();
    let c = handles(&env.put_file(&sid, &folder, b"three", Some(&b)).await["f"])[0].clone();

    let f = env.fetch(&sid).await;
    let current = handles(&f["f"]);
    assert!(current.contains(&c));
    assert!(!current.contains(&a) && !current.contains(&b), "{f}");
    assert_eq!(node(&f["f2"], &b).unwrap()["p"], json!(c));
    assert_eq!(node(&f["f2"], &a).unwrap()["p"], json!(b));
    // Nothing went to the Rubbish Bin; versions count as versions and use storage.
    let uq = env.run(&sid, json!({"a": "uq", "strg": 1})).await;
    assert_eq!(uq["cstrgn"][&root], json!([5, 1, 1, 7, 2]));
    assert_eq!(uq["cstrg"], json!(12));

    // The superseded file left the folder (`d`) and came back as a version (`t.f2`).
    let (packets, _) = env.packets_after(&sid, &sn).await;
    let pos_d = packets
        .iter()
        .position(|p| p["a"] == json!("d") && p["n"] == json!(b))
        .unwrap();
    let t = &packets[pos_d + 1];
    assert_eq!(t["a"], json!("t"));
    assert_eq!(handles(&t["t"]["f"]), vec![c.clone()]);
    assert_eq!(handles(&t["t"]["f2"]), vec![b.clone(), a.clone()]);

    // A version moves only with its file.
    let m = json!({"a": "m", "n": a, "t": root});
    assert_eq!(env.run(&sid, m).await, json!(-11));

    // `d` with `v: 1` drops one version and re-links the rest.
    assert_eq!(
        env.run(&sid, json!({"a": "d", "n": b, "v": 1})).await,
        json!(0)
    );
    let f = env.fetch(&sid).await;
    assert_eq!(handles(&f["f2"]), vec![a.clone()]);
    assert_eq!(node(&f["f2"], &a).unwrap()["p"], json!(c));
    // Deleting the current one with `v: 1` promotes the previous version.
    assert_eq!(
        env.run(&sid, json!({"a": "d", "n": c, "v": 1})).await,
        json!(0)
    );
    let f = env.fetch(&sid).await;
    assert_eq!(node(&f["f"], &a).unwrap()["p"], json!(folder));
    assert!(handles(&f["f2"]).is_empty());

    // `dv` removes every previous version, nothing else.
    let d = handles(&env.put_file(&sid, &folder, b"four", Some(&a)).await["f"])[0].clone();
    assert_eq!(env.run(&sid, json!({"a": "dv"})).await, json!(0));
    let f = env.fetch(&sid).await;
    assert!(handles(&f["f"]).contains(&d));
    assert!(handles(&f["f2"]).is_empty());
    // Deleting a file deletes its versions.
    let e = handles(&env.put_file(&sid, &folder, b"five", Some(&d)).await["f"])[0].clone();
    assert_eq!(env.run(&sid, json!({"a": "d", "n": e})).await, json!(0));
    let f = env.fetch(&sid).await;
    assert!(!handles(&f["f"]).contains(&e) && handles(&f["f2"]).is_empty());
    let uq = env.run(&sid, json!({"a": "uq", "strg": 1})).await;
    assert_eq!(uq["cstrg"], json!(0));
}

#[tokio::test]
async fn versioning_off_deletes_the_superseded_file_and_chains_are_bounded() {
    let env = start(Limits::default()).await;
    let sid = env.account("off@x.example", 1 << 30).await;
    let root = env.root(&sid).await;
    let a = handles(&env.put_file(&sid, &root, b"a", None).await["f"])[0].clone();
    let b = handles(&env.put_file(&sid, &root, b"b", Some(&a)).await["f"])[0].clone();
    // `^!dv` = "1": the account turned versions off.
    env.run(&sid, json!({"a": "up2", "^!dv": crypto::b64e(b"1")}))
        .await;
    let c = handles(&env.put_file(&sid, &root, b"c", Some(&b)).await["f"])[0].clone();
    let f = env.fetch(&sid).await;
    assert!(node(&f["f"], &b).is_none() && node(&f["f2"], &b).is_none());
    // The older versions of the deleted one stay, under the new node.
    assert_eq!(node(&f["f2"], &a).unwrap()["p"], json!(c));

    // Back on (`vb: 1` also overrides per command); the chain keeps the newest 100.
    env.run(&sid, json!({"a": "up2", "^!dv": crypto::b64e(b"0")}))
        .await;
    let mut cur = c;
    for i in 0..101 {
        let r = env
            .put_file(&sid, &root, format!("{i}").as_bytes(), Some(&cur))
            .await;
        cur = handles(&r["f"])[0].clone();
    }
    let f = env.fetch(&sid).await;
    assert_eq!(f["f2"].as_array().unwrap().len(), 100);
    assert!(
        node(&f["f2"], &a).is_none(),
        "the oldest version goes first"
    );
}
