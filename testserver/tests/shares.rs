//! Folders shared between users, server side: `s2` to users with access levels, what the
//! recipient's `f` and packets hold, `k` composed per viewer, access enforced on every
//! command, leaving and ending a share, pending keys (`pk`) and public keys (`uk`).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mega_testserver::Limits;
use serde_json::{json, Value};

const KEY16: &str = "AAECAwQFBgcICQoLDA0ODw"; // 16 bytes
const KEY32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // 32 bytes
const WRAPPED: &str = "EBESExQVFhcYGRobHB0eHw"; // a 16-byte key "under the share key"

struct Users {
    env: Env,
    alice: String,
    bob: String,
    carol: String,
    dave: String,
    handles: [String; 4],
    folder: String,
    file: String,
}

impl Env {
    async fn handle_of(&self, sid: &str) -> String {
        self.run(sid, json!({"a": "ug"})).await["u"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn sc(&self, sid: &str, sn: &str) -> Vec<Value> {
        self.packets_after(sid, sn).await.0
    }

    async fn sn(&self, sid: &str) -> String {
        self.run(sid, json!({"a": "f", "c": 1})).await["sn"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn node<'a>(f: &'a Value, h: &str) -> Option<&'a Value> {
    f["f"].as_array()?.iter().find(|n| n["h"] == json!(h))
}

/// alice shares a folder (with a file in it) read-write with bob and read-only with carol.
async fn setup() -> Users {
    let env = start(Limits::default()).await;
    let alice = env.account("alice@x.example", 1 << 30).await;
    let bob = env.account("bob@x.example", 1 << 30).await;
    let carol = env.account("carol@x.example", 1 << 30).await;
    let dave = env.account("dave@x.example", 1 << 30).await;
    let handles = [
        env.handle_of(&alice).await,
        env.handle_of(&bob).await,
        env.handle_of(&carol).await,
        env.handle_of(&dave).await,
    ];
    env.befriend(&alice, &bob, "bob@x.example").await;
    env.befriend(&alice, &carol, "carol@x.example").await;
    let root = env.root(&alice).await;
    let folder = env.mkdir(&alice, &root).await;
    let file = env.put_file(&alice, &folder, b"content", None).await["f"][0]["h"]
        .as_str()
        .unwrap()
        .to_string();
    let r = env
        .run(
            &alice,
            json!({"a": "s2", "n": folder, "ok": "AAAAAAAAAAAAAAAAAAAAAA", "ha": "AAAAAAAAAAAAAAAAAAAAAA",
                   "s": [{"u": handles[1], "r": 1}, {"u": "carol@x.example", "r": 0}],
                   "cr": [[folder], [folder, file], [0, 0, KEY16, 0, 1, KEY32]]}),
        )
        .await;
    assert_eq!(r, json!(0));
    Users {
        env,
        alice,
        bob,
        carol,
        dave,
        handles,
        folder,
        file,
    }
}

#[tokio::test]
async fn recipients_see_the_share_with_keys_under_the_share_key() {
    let u = setup().await;
    let env = &u.env;
    let [alice_h, bob_h, carol_h, _] = &u.handles;
    let f = env.run(&u.bob, json!({"a": "f", "c": 1})).await;
    let root = node(&f, &u.folder).expect("the share root is in bob's f");
    assert_eq!(root["su"], json!(alice_h));
    assert_eq!(root["r"], json!(1));
    assert!(root["sts"].is_i64());
    assert_eq!(root["u"], json!(alice_h));
    assert_eq!(root["k"], json!(format!("{}:{KEY16}", u.folder)));
    let file = node(&f, &u.file).unwrap();
    assert_eq!(
        file["k"],
        json!(format!("{}:{KEY32}", u.folder)),
        "no pair of alice's"
    );
    assert_eq!(file["p"], json!(u.folder));
    let users = f["u"].as_array().unwrap();
    assert!(users
        .iter()
        .any(|x| x["u"] == json!(alice_h) && x["c"] == json!(1)));

    // The owner lists its outgoing shares.
    let fa = env.run(&u.alice, json!({"a": "f", "c": 1})).await;
    let s = fa["s"].as_array().unwrap();
    assert!(s
        .iter()
        .any(|x| x["u"] == json!(bob_h) && x["r"] == json!(1)));
    assert!(s
        .iter()
        .any(|x| x["u"] == json!(carol_h) && x["r"] == json!(0)));

    // Somebody else sees nothing of it.
    let fd = env.run(&u.dave, json!({"a": "f", "c": 1})).await;
    assert!(node(&fd, &u.folder).is_none() && node(&fd, &u.file).is_none());
    let g = json!({"a": "g", "g": 1, "n": u.file});
    assert_eq!(env.run(&u.dave, g.clone()).await, json!(-9));
    assert!(
        env.run(&u.carol, g).await["g"].is_string(),
        "read-only can download"
    );
}

#[tokio::test]
async fn access_levels_are_enforced_and_writes_reach_every_member() {
    let u = setup().await;
    let env = &u.env;
    let [_, bob_h, _, _] = &u.handles;
    let (sn_alice, sn_carol) = (env.sn(&u.alice).await, env.sn(&u.carol).await);

    // bob (read-write) uploads into the share; the key for the share comes in `cr` with an
    // empty node list (positions in `n`, as the SDK sends it).
    let token = env.upload(&u.bob, b"from bob").await;
    let r = env
        .run(
            &u.bob,
            json!({"a": "p", "t": u.folder, "n": [{"h": token, "t": 0, "a": "QUFBQQ", "k": KEY32}],
                   "cr": [[u.folder], [], [0, 0, WRAPPED]]}),
        )
        .await;
    let new = &r["f"][0];
    let h = new["h"].as_str().unwrap().to_string();
    assert_eq!(new["u"], json!(bob_h));
    assert_eq!(
        new["k"],
        json!(format!("{bob_h}:{KEY32}/{}:{WRAPPED}", u.folder)),
        "own pair first"
    );
    let fa = env.run(&u.alice, json!({"a": "f", "c": 1})).await;
    assert_eq!(
        node(&fa, &h).unwrap()["k"],
        json!(format!("{}:{WRAPPED}", u.folder)),
        "the owner gets only the pair it can use"
    );
    for (sid, sn) in [(&u.alice, &sn_alice), (&u.carol, &sn_carol)] {
        let packets = env.sc(sid, sn).await;
        assert!(
            packets
                .iter()
                .any(|p| p["a"] == json!("t") && p["t"]["f"][0]["h"] == json!(h)),
            "{packets:?}"
        );
    }

    // carol (read-only) can change nothing; bob (read-write) can neither delete nor move.
    let token = env.upload(&u.carol, b"x").await;
    let put =
        json!({"a": "p", "t": u.folder, "n": [{"h": token, "t": 0, "a": "QUFBQQ", "k": KEY32}]});
    assert_eq!(env.run(&u.carol, put).await, json!(-11));
    let rename = json!({"a": "a", "n": u.file, "at": "QkJCQg"});
    assert_eq!(env.run(&u.carol, rename.clone()).await, json!(-11));
    assert_eq!(
        env.run(&u.carol, json!({"a": "d", "n": u.file})).await,
        json!(-11)
    );
    assert_eq!(
        env.run(&u.bob, rename).await,
        json!(-11),
        "renaming takes full access"
    );
    assert_eq!(
        env.run(&u.bob, json!({"a": "d", "n": u.file})).await,
        json!(-11)
    );
    let sub = env.mkdir(&u.bob, &u.folder).await;
    assert_eq!(
        env.run(&u.bob, json!({"a": "m", "n": u.file, "t": sub}))
            .await,
        json!(-11)
    );
    // Nothing moves into another user's tree.
    let bob_root = env.root(&u.bob).await;
    assert_eq!(
        env.run(&u.bob, json!({"a": "m", "n": sub, "t": bob_root}))
            .await,
        json!(-11)
    );

    // Full access may delete; everybody is told.
    let sn_bob = env.sn(&u.bob).await;
    let r = env
        .run(
            &u.alice,
            json!({"a": "s2", "n": u.folder, "s": [{"u": bob_h, "r": 2}], "ok": "AAAAAAAAAAAAAAAAAAAAAA", "ha": "AAAAAAAAAAAAAAAAAAAAAA"}),
        )
        .await;
    assert_eq!(r, json!(0));
    assert_eq!(env.run(&u.bob, json!({"a": "d", "n": h})).await, json!(0));
    let packets = env.sc(&u.bob, &sn_bob).await;
    assert!(packets
        .iter()
        .any(|p| p["a"] == json!("s") && p["r"] == json!(2)));
    let packets = env.sc(&u.carol, &sn_carol).await;
    assert!(packets
        .iter()
        .any(|p| p["a"] == json!("d") && p["n"] == json!(h)));
}

#[tokio::test]
async fn shares_end_by_the_owner_or_the_recipient() {
    let u = setup().await;
    let env = &u.env;
    let [alice_h, bob_h, carol_h, _] = &u.handles;
    let sn_carol = env.sn(&u.carol).await;
    let r = env
        .run(
            &u.alice,
            json!({"a": "s2", "n": u.folder, "s": [{"u": carol_h}]}),
        )
        .await;
    assert_eq!(r, json!(0));
    let packets = env.sc(&u.carol, &sn_carol).await;
    assert!(packets
        .iter()
        .any(|p| p["a"] == json!("s") && p["n"] == json!(u.folder) && p.get("r").is_none()));
    let fc = env.run(&u.carol, json!({"a": "f", "c": 1})).await;
    assert!(node(&fc, &u.folder).is_none());

    // bob leaves: the share ends, alice's folder stays.
    let sn_alice = env.sn(&u.alice).await;
    assert_eq!(
        env.run(&u.bob, json!({"a": "d", "n": u.folder})).await,
        json!(0)
    );
    let fb = env.run(&u.bob, json!({"a": "f", "c": 1})).await;
    assert!(node(&fb, &u.folder).is_none());
    let fa = env.run(&u.alice, json!({"a": "f", "c": 1})).await;
    assert!(node(&fa, &u.folder).is_some() && node(&fa, &u.file).is_some());
    assert!(fa["s"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["u"] != json!(bob_h)));
    let packets = env.sc(&u.alice, &sn_alice).await;
    assert!(packets
        .iter()
        .any(|p| p["a"] == json!("s") && p["ou"] == json!(bob_h) && p["o"] == json!(alice_h)));
}

#[tokio::test]
async fn pending_keys_queue_per_recipient_and_public_keys() {
    let u = setup().await;
    let env = &u.env;
    let [alice_h, bob_h, _, _] = &u.handles;
    assert_eq!(env.run(&u.bob, json!({"a": "pk"})).await, json!(-9));
    let sn_bob = env.sn(&u.bob).await;
    let r = env
        .run(
            &u.alice,
            json!({"a": "pk", "u": bob_h, "h": u.folder, "k": KEY16}),
        )
        .await;
    assert_eq!(r, json!(0));
    // Only for own folders (another's is not found), only 16-byte keys.
    let bad = json!({"a": "pk", "u": alice_h, "h": u.folder, "k": KEY16});
    assert_eq!(env.run(&u.bob, bad).await, json!(-9));
    let bad = json!({"a": "pk", "u": bob_h, "h": u.folder, "k": KEY32});
    assert_eq!(env.run(&u.alice, bad).await, json!(-2));
    let packets = env.sc(&u.bob, &sn_bob).await;
    assert!(packets.iter().any(|p| p["a"] == json!("pk")), "{packets:?}");

    let got = env.run(&u.bob, json!({"a": "pk"})).await;
    assert_eq!(got[alice_h.as_str()][&u.folder], json!(KEY16));
    let d = got["d"].as_str().unwrap().to_string();
    // A key sent after the fetch survives the acknowledgement of the fetched ones.
    env.run(
        &u.alice,
        json!({"a": "pk", "u": bob_h, "h": u.folder, "k": WRAPPED}),
    )
    .await;
    assert_eq!(env.run(&u.bob, json!({"a": "pk", "d": d})).await, json!(0));
    let again = env.run(&u.bob, json!({"a": "pk"})).await;
    assert_eq!(again[alice_h.as_str()][&u.folder], json!(WRAPPED));

    let uk = env
        .run(&u.bob, json!({"a": "uk", "u": "alice@x.example"}))
        .await;
    assert_eq!(uk["u"], json!(alice_h));
    assert!(uk["pubk"].as_str().unwrap().len() > 300);
    assert_eq!(
        env.run(&u.bob, json!({"a": "uk", "u": "nobody@x.example"}))
            .await,
        json!(-9)
    );
}

#[tokio::test]
async fn a_share_with_an_address_without_an_account_waits_for_it() {
    let u = setup().await;
    let env = &u.env;
    let alice_h = &u.handles[0];
    let share = json!({"a": "s2", "n": u.folder, "ok": "AAAAAAAAAAAAAAAAAAAAAA", "ha": "AAAAAAAAAAAAAAAAAAAAAA",
                       "s": [{"u": "Newbie@x.example", "r": 1}]});
    assert_eq!(env.run(&u.alice, share).await, json!(0));
    let fa = env.fetch(&u.alice).await;
    let ps = &fa["ps"][0];
    assert_eq!(ps["h"], json!(u.folder));
    assert_eq!(ps["r"], json!(1));
    let p = ps["p"].as_str().unwrap().to_string();
    assert_eq!(fa["opc"][0]["m"], json!("newbie@x.example"));
    assert_eq!(fa["opc"][0]["p"], json!(p));

    // The account is created and finds the contact request, not the share; accepting the
    // request turns the pending share into a share, and alice is told.
    let newbie = env.account("newbie@x.example", 1 << 30).await;
    let newbie_h = env.handle_of(&newbie).await;
    let fnew = env.fetch(&newbie).await;
    assert!(
        node(&fnew, &u.folder).is_none(),
        "not shared before accepting"
    );
    assert_eq!(fnew["ipc"][0]["p"], json!(p));
    let sn = env.sn(&u.alice).await;
    let r = env
        .run(&newbie, json!({"a": "upca", "p": p, "aa": "a"}))
        .await;
    assert_eq!(r, json!(0));
    let packets = env.sc(&u.alice, &sn).await;
    assert!(
        packets.iter().any(|x| x["a"] == json!("s")
            && x["op"] == json!(p)
            && x["u"] == json!(newbie_h)
            && x["r"] == json!(1)),
        "{packets:?}"
    );
    let fa = env.fetch(&u.alice).await;
    assert!(fa["ps"].as_array().unwrap().is_empty());
    assert!(fa["s"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["u"] == json!(newbie_h)));
    let fnew = env.fetch(&newbie).await;
    assert_eq!(node(&fnew, &u.folder).unwrap()["su"], json!(alice_h));

    // A pending share can be withdrawn by address.
    let other = json!({"a": "s2", "n": u.folder, "ok": "AAAAAAAAAAAAAAAAAAAAAA", "ha": "AAAAAAAAAAAAAAAAAAAAAA",
                       "s": [{"u": "later@x.example", "r": 0}]});
    assert_eq!(env.run(&u.alice, other).await, json!(0));
    let gone = json!({"a": "s2", "n": u.folder, "s": [{"u": "later@x.example"}]});
    assert_eq!(env.run(&u.alice, gone).await, json!(0));
    assert!(env.fetch(&u.alice).await["ps"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn contact_requests_are_sent_accepted_and_removed() {
    let u = setup().await;
    let env = &u.env;
    let [alice_h, _, _, dave_h] = &u.handles;
    let sn_dave = env.sn(&u.dave).await;
    let r = env
        .run(
            &u.alice,
            json!({"a": "upc", "u": "dave@x.example", "aa": "a", "msg": "hi"}),
        )
        .await;
    let p = r["p"].as_str().unwrap().to_string();
    assert_eq!(r["m"], json!("dave@x.example"));
    // Twice is refused; the invitation shows on both sides.
    assert_eq!(
        env.run(
            &u.alice,
            json!({"a": "upc", "u": "dave@x.example", "aa": "a"})
        )
        .await,
        json!(-12)
    );
    assert_eq!(env.fetch(&u.alice).await["opc"][0]["p"], json!(p));
    let fd = env.fetch(&u.dave).await;
    assert_eq!(fd["ipc"][0]["p"], json!(p));
    assert_eq!(fd["ipc"][0]["m"], json!("alice@x.example"));
    let packets = env.sc(&u.dave, &sn_dave).await;
    assert!(packets
        .iter()
        .any(|x| x["a"] == json!("ipc") && x["p"] == json!(p)));
    // Only the invitee may answer.
    assert_eq!(
        env.run(&u.bob, json!({"a": "upca", "p": p, "aa": "a"}))
            .await,
        json!(-9)
    );
    let sn_alice = env.sn(&u.alice).await;
    assert_eq!(
        env.run(&u.dave, json!({"a": "upca", "p": p, "aa": "a"}))
            .await,
        json!(0)
    );
    let packets = env.sc(&u.alice, &sn_alice).await;
    assert!(packets
        .iter()
        .any(|x| x["a"] == json!("upco") && x["s"] == json!(2)));
    assert!(packets
        .iter()
        .any(|x| x["a"] == json!("c") && x["u"][0]["u"] == json!(dave_h)));
    let fa = env.fetch(&u.alice).await;
    assert!(fa["u"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["u"] == json!(dave_h) && x["c"] == json!(1)));
    assert!(env.fetch(&u.dave).await["ipc"]
        .as_array()
        .unwrap()
        .is_empty());
    // Contacts read each other's protected attributes.
    env.run(&u.alice, json!({"a": "up2", "#note": "bm90ZQ"}))
        .await;
    let get = json!({"a": "uga", "u": alice_h, "ua": "#note"});
    assert_eq!(env.run(&u.dave, get.clone()).await, json!("bm90ZQ"));
    // Removed: hidden on both sides.
    let r = env
        .run(&u.alice, json!({"a": "ur2", "u": "dave@x.example", "l": 0}))
        .await;
    assert_eq!(r["u"], json!(dave_h));
    let fa = env.fetch(&u.alice).await;
    assert!(fa["u"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["u"] == json!(dave_h) && x["c"] == json!(0)));
    assert_eq!(env.run(&u.dave, get).await, json!(-9));
}

/// Every mutating command × every access level (none, read, read-write, full) × a node inside
/// and outside the share, each with the real service's answer (the SDK checks the same rules
/// before it sends them: `p` needs read-write on the target, `m` full on the node and
/// read-write on the target, `d` and `a` full, `s2` and `l` owner). A node the member cannot
/// see answers ENOENT (-9), one it sees without the access needed EACCESS (-11). `p` with
/// `ov`: read-write may add a version but the old content always stays as a previous version
/// (whatever `vb` the member sends), and `ov` must name a file in the target folder.
#[tokio::test]
async fn every_mutating_command_at_every_access_level() {
    let env = start(Limits::default()).await;
    let alice = env.account("owner@x.example", 1 << 30).await;
    // One member per level; "none" has no share at all.
    let levels: [(&str, Option<i64>); 4] = [
        ("none", None),
        ("read", Some(0)),
        ("readwrite", Some(1)),
        ("full", Some(2)),
    ];
    let mut members = Vec::new();
    for (name, _) in &levels {
        let sid = env.account(&format!("{name}@x.example"), 1 << 30).await;
        let h = env.handle_of(&sid).await;
        env.befriend(&alice, &sid, &format!("{name}@x.example"))
            .await;
        members.push((sid, h));
    }
    let root = env.root(&alice).await;
    const ENOENT: i64 = -9;
    const EACCESS: i64 = -11;
    // (command, expected for read, readwrite, full) inside the share; outside, and for a
    // member without a share, always ENOENT.
    let table: [(&str, [i64; 3]); 7] = [
        ("p", [EACCESS, 0, 0]),
        ("p+ov", [EACCESS, 0, 0]),
        ("m", [EACCESS, EACCESS, 0]),
        ("d", [EACCESS, EACCESS, 0]),
        ("a", [EACCESS, EACCESS, 0]),
        ("s2", [EACCESS, EACCESS, EACCESS]),
        ("l", [EACCESS, EACCESS, EACCESS]),
    ];
    for (cmd, inside) in table {
        for (li, (level, access)) in levels.iter().enumerate() {
            for within in [true, false] {
                // A fresh tree for every case: the share S (folder D and file F in it) and,
                // outside it, folder O (folder E and file G in it).
                let s = env.mkdir(&alice, &root).await;
                let d = env.mkdir(&alice, &s).await;
                let f = env.put_file(&alice, &s, b"owner's content", None).await["f"][0]["h"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let o = env.mkdir(&alice, &root).await;
                let e = env.mkdir(&alice, &o).await;
                let g = env.put_file(&alice, &o, b"other content", None).await["f"][0]["h"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let targets: Vec<Value> = levels
                    .iter()
                    .zip(&members)
                    .filter_map(|((_, a), (_, h))| a.map(|r| json!({"u": h, "r": r})))
                    .collect();
                let shared = env
                    .run(
                        &alice,
                        json!({"a": "s2", "n": s, "ok": "AAAAAAAAAAAAAAAAAAAAAA",
                               "ha": "AAAAAAAAAAAAAAAAAAAAAA", "s": targets}),
                    )
                    .await;
                assert_eq!(shared, json!(0));
                let (folder, sub, file) = if within { (&s, &d, &f) } else { (&o, &e, &g) };
                let sid = &members[li].0;
                let command = match cmd {
                    "p" => json!({"a": "p", "t": folder,
                                  "n": [{"h": "xxxxxxxx", "t": 1, "a": "QUFBQQ", "k": KEY16}]}),
                    "p+ov" => {
                        let token = env.upload(sid, b"member's content").await;
                        // The member's own setting says "no versions": it must not decide.
                        json!({"a": "p", "t": folder, "vb": 0,
                               "n": [{"h": token, "t": 0, "a": "QUFBQQ", "k": KEY32, "ov": file}]})
                    }
                    "m" => json!({"a": "m", "n": file, "t": sub}),
                    "d" => json!({"a": "d", "n": file}),
                    "a" => json!({"a": "a", "n": file, "at": "QkJCQg"}),
                    "s2" => json!({"a": "s2", "n": sub, "ok": "AAAAAAAAAAAAAAAAAAAAAA",
                                   "ha": "AAAAAAAAAAAAAAAAAAAAAA",
                                   "s": [{"u": members[0].1, "r": 0}]}),
                    "l" => json!({"a": "l", "n": file}),
                    _ => unreachable!(),
                };
                let got = env.run(sid, command).await;
                let want = match (within, access) {
                    (true, Some(_)) => inside[li - 1],
                    _ => ENOENT,
                };
                let code = got.as_i64().unwrap_or(0);
                assert_eq!(
                    code,
                    want,
                    "{cmd} by a {level} member {} the share: {got}",
                    if within { "inside" } else { "outside" }
                );
                // Whatever happened, the owner's file is still there unless a member with
                // full access deleted it; a new version keeps it as the previous version.
                let tree = env.fetch(&alice).await;
                let all: Vec<&Value> = ["f", "f2"]
                    .iter()
                    .filter_map(|k| tree[*k].as_array())
                    .flatten()
                    .collect();
                let still = all.iter().find(|n| n["h"] == json!(file));
                if cmd == "d" && code == 0 {
                    assert!(still.is_none());
                } else {
                    assert!(
                        still.is_some(),
                        "{cmd} by {level}: the owner's file is gone"
                    );
                }
                if cmd == "p+ov" && code == 0 {
                    let new = got["f"][0]["h"].clone();
                    assert_eq!(
                        still.unwrap()["p"],
                        new,
                        "{level}: the old content is the new node's previous version"
                    );
                }
            }
        }
    }
    // `ov` naming a file in another folder is refused; nothing moves.
    let s = env.mkdir(&alice, &root).await;
    let o = env.mkdir(&alice, &root).await;
    let g = env.put_file(&alice, &o, b"elsewhere", None).await["f"][0]["h"]
        .as_str()
        .unwrap()
        .to_string();
    let r = env.put_file(&alice, &s, b"new", Some(&g)).await;
    assert_eq!(r, json!(-2), "{r}");
    let tree = env.fetch(&alice).await;
    let gnode = tree["f"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["h"] == json!(g))
        .unwrap();
    assert_eq!(gnode["p"], json!(o));
}

/// Sharing with an account that is not a contact invites it (an `ipc` it sees) and makes the
/// share pending on that request, as MEGA's apps work: nothing is visible to it until it
/// accepts; accepting turns the pending share into a share (the owner's `s` names the pending
/// one in `op`); a denied request ends the pending share.
#[tokio::test]
async fn a_share_with_a_non_contact_waits_for_the_contact_request() {
    let u = setup().await;
    let env = &u.env;
    let dave_h = &u.handles[3];
    let share = |to: &str| {
        json!({"a": "s2", "n": u.folder, "ok": "AAAAAAAAAAAAAAAAAAAAAA", "ha": "AAAAAAAAAAAAAAAAAAAAAA",
               "s": [{"u": to, "r": 0}]})
    };
    // By handle or by address: the same pending share, on one request.
    assert_eq!(env.run(&u.alice, share(dave_h)).await, json!(0));
    let fa = env.fetch(&u.alice).await;
    let ps = fa["ps"].as_array().unwrap();
    assert_eq!(ps.len(), 1, "{ps:?}");
    let p = ps[0]["p"].as_str().unwrap().to_string();
    let opc: Vec<&Value> = fa["opc"].as_array().unwrap().iter().collect();
    assert_eq!(opc.len(), 1, "one request, listed once: {opc:?}");
    assert_eq!(
        (&opc[0]["p"], &opc[0]["m"]),
        (&json!(p), &json!("dave@x.example"))
    );
    let fd = env.fetch(&u.dave).await;
    assert!(node(&fd, &u.folder).is_none(), "nothing shared yet");
    assert_eq!(fd["ipc"][0]["p"], json!(p));
    // dave cannot reach the folder meanwhile.
    let g = env
        .run(&u.dave, json!({"a": "g", "n": u.file, "g": 1}))
        .await;
    assert_eq!(g, json!(-9));

    let sn = env.sn(&u.alice).await;
    let dsn = env.sn(&u.dave).await;
    let r = env
        .run(&u.dave, json!({"a": "upca", "p": p, "aa": "a"}))
        .await;
    assert_eq!(r, json!(0));
    let packets = env.sc(&u.alice, &sn).await;
    assert!(
        packets.iter().any(|x| x["a"] == json!("s")
            && x["op"] == json!(p)
            && x["u"] == json!(dave_h)
            && x["r"] == json!(0)),
        "{packets:?}"
    );
    let dpackets = env.sc(&u.dave, &dsn).await;
    assert!(
        dpackets.iter().any(|x| x["a"] == json!("t")),
        "the subtree arrives: {dpackets:?}"
    );
    let fd = env.fetch(&u.dave).await;
    assert_eq!(node(&fd, &u.folder).unwrap()["r"], json!(0));
    assert!(env.fetch(&u.alice).await["ps"]
        .as_array()
        .unwrap()
        .is_empty());

    // A denied request ends the share that waited on it.
    let erin = env.account("erin@x.example", 1 << 30).await;
    assert_eq!(env.run(&u.alice, share("erin@x.example")).await, json!(0));
    let p = env.fetch(&erin).await["ipc"][0]["p"]
        .as_str()
        .unwrap()
        .to_string();
    let sn = env.sn(&u.alice).await;
    let r = env
        .run(&erin, json!({"a": "upca", "p": p, "aa": "d"}))
        .await;
    assert_eq!(r, json!(0));
    assert!(env.fetch(&u.alice).await["ps"]
        .as_array()
        .unwrap()
        .is_empty());
    let packets = env.sc(&u.alice, &sn).await;
    assert!(
        packets
            .iter()
            .any(|x| x["a"] == json!("s2") && x["p"] == json!(p) && x.get("r").is_none()),
        "{packets:?}"
    );
    assert!(node(&env.fetch(&erin).await, &u.folder).is_none());
}
