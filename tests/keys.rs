//! The key manager (`^!keys`) on today's accounts: read at login, changed only with the
//! versioned read-modify-write (conflicts re-applied, unknown tags kept byte for byte, the
//! generation only growing, never below one already seen), and used for folder links, whose
//! key must be in `^!keys` before `s2` (zero `ok`/`ha` placeholders). Legacy accounts keep
//! `ok`/`ha`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::Env;
use mega_mount::api::attrs::{GetUserAttribute, PutVersionedAttribute};
use mega_mount::client::PublicFolder;
use mega_mount::crypto::b64;
use mega_mount::crypto::keymgr::{KeysContainer, IN_USE, TRUSTED};
use mega_mount::Client;

/// The account's current `^!keys`, decrypted, and its version.
async fn keys_of(c: &Client) -> (KeysContainer, String) {
    let a = c
        .api()
        .run(&GetUserAttribute {
            u: &c.session().user,
            ua: "^!keys",
            v: 1,
        })
        .await
        .unwrap();
    let blob = b64::decode(&a.av, "av").unwrap();
    (
        KeysContainer::open(&c.session().master_key, &blob).unwrap(),
        a.v,
    )
}

/// Writes `^!keys` as another client would.
async fn write_keys(c: &Client, k: &KeysContainer, version: &str) {
    c.api()
        .run(&PutVersionedAttribute {
            name: "^!keys",
            value: b64::encode(&k.seal(&c.session().master_key, None)),
            version: Some(version),
        })
        .await
        .unwrap();
}

fn handle6(h: &str) -> [u8; 6] {
    b64::decode(h, "h").unwrap().try_into().unwrap()
}

#[tokio::test]
async fn folder_links_keep_their_key_in_the_key_manager() {
    let env = Env::start().await;
    let c = env.account("km@example.com").await;
    assert!(c.has_key_manager());
    let root = c.root().unwrap().handle;
    let folder = c.mkdir(&root, "shared").await.unwrap();
    let (before, _) = keys_of(&c).await;
    assert_eq!(before.generation(), 1);
    let link = c.export(&folder.handle).await.unwrap();

    let (after, _) = keys_of(&c).await;
    assert_eq!(after.generation(), 2);
    let rec = after
        .share_keys()
        .into_iter()
        .find(|r| r.node == handle6(&folder.handle.0))
        .expect("the folder's key is in ^!keys");
    assert_eq!(rec.flags, TRUSTED | IN_USE);
    for (t, v) in before.records() {
        if t != 4 && t != 48 {
            assert_eq!(after.get(t), Some(v), "tag {t} unchanged");
        }
    }

    // A fresh session has no usable `ok` (zero placeholders) and takes the key from
    // `^!keys`: a file it adds to the folder is readable through the link.
    let fresh = env.login("km@example.com").await;
    let mut body: &[u8] = b"added later";
    fresh
        .upload(
            &folder.handle,
            "later.txt",
            &mut body,
            11,
            1_700_000_000,
            None,
        )
        .await
        .unwrap();
    let api = mega_mount::api::ApiClient::new(env.api_config()).unwrap();
    let pf = PublicFolder::open(&api, &link).await.unwrap();
    let kids = pf.tree().children(&pf.root().handle);
    assert_eq!(kids.len(), 1);
    assert_eq!(kids[0].name, "later.txt", "decryptable by the link's key");
    // Exporting again reuses the key: ^!keys is not written again.
    assert_eq!(fresh.export(&folder.handle).await.unwrap(), link);
    assert_eq!(keys_of(&fresh).await.0.generation(), 2);
}

/// The account's attributes are read from `ug` (v:1), as the SDK reads them: a server that
/// answers `uga` as an unknown command (`-1`, as older independent servers do) still lets a
/// key-manager account log in with its share keys and settings, and a legacy account list.
#[tokio::test]
async fn login_reads_attributes_from_ug_and_needs_no_uga() {
    let env = Env::start().await;
    let c = env.account("ug@example.com").await;
    let root = c.root().unwrap().handle;
    let folder = c.mkdir(&root, "linked").await.unwrap();
    let link = c.export(&folder.handle).await.unwrap();
    env.set_attr("ug@example.com", "^!dv", b"1").await;
    env.legacy_user("old@example.com").await;
    env.server
        .faults()
        .update(|f| f.unknown_commands = vec!["uga".into()]);
    let asked = env.server.stats().commands("uga");

    let fresh = env.login("ug@example.com").await;
    assert!(fresh.has_key_manager());
    assert!(!fresh.versions_enabled(), "^!dv from ug");
    // The folder's key came from ug's ^!keys (its `ok` is a zero placeholder): a file
    // added now is readable through the link.
    let mut body: &[u8] = b"via ug";
    fresh
        .upload(&folder.handle, "f.txt", &mut body, 6, 1_700_000_000, None)
        .await
        .unwrap();
    let api = mega_mount::api::ApiClient::new(env.api_config()).unwrap();
    let pf = PublicFolder::open(&api, &link).await.unwrap();
    assert_eq!(pf.tree().children(&pf.root().handle)[0].name, "f.txt");

    let old = env.login("old@example.com").await;
    assert!(!old.has_key_manager());
    let oroot = old.root().unwrap().handle;
    old.mkdir(&oroot, "d").await.unwrap();
    assert!(old.view(|t| t.child_by_name(&oroot, "d").is_some()));
    assert_eq!(env.server.stats().commands("uga"), asked, "no uga at login");
}

#[tokio::test]
async fn concurrent_changes_by_two_clients_are_all_kept() {
    let env = Env::start().await;
    let a = Arc::new(env.account("two@example.com").await);
    let b = Arc::new(env.login("two@example.com").await);
    let root = a.root().unwrap().handle;
    let mut folders = Vec::new();
    for i in 0..8 {
        folders.push(a.mkdir(&root, &format!("f{i}")).await.unwrap().handle);
    }
    b.fetch().await.unwrap();
    let mut tasks = Vec::new();
    for (i, h) in folders.iter().enumerate() {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let h = h.clone();
        tasks.push(tokio::spawn(async move { c.export(&h).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (k, _) = keys_of(&a).await;
    assert_eq!(
        k.share_keys().len(),
        8,
        "every key kept despite the conflicts"
    );
    assert_eq!(k.generation(), 9, "one generation per write");
}

#[tokio::test]
async fn unknown_tags_survive_and_an_older_generation_stops_writes() {
    let env = Env::start().await;
    let c = env.account("tags@example.com").await;
    let root = c.root().unwrap().handle;
    // Another client wrote tags this one does not know, and warnings.
    let (k, v) = keys_of(&c).await;
    let mut records: Vec<(u8, Vec<u8>)> = k.records().map(|(t, v)| (t, v.to_vec())).collect();
    for r in &mut records {
        if r.0 == 96 {
            r.1 = vec![0x02, b'c', b'v', 0x00, 0x01, b'1'];
        }
    }
    records.push((0xC8, b"\x00\x01future\xff".to_vec()));
    let mut edited = KeysContainer::from_records(records.clone());
    edited.set_generation(5);
    write_keys(&c, &edited, &v).await;
    c.refresh_keys(None).await.unwrap();

    let f = c.mkdir(&root, "x").await.unwrap();
    c.export(&f.handle).await.unwrap();
    let (after, v2) = keys_of(&c).await;
    assert_eq!(after.generation(), 6);
    let got: Vec<(u8, Vec<u8>)> = after.records().map(|(t, v)| (t, v.to_vec())).collect();
    assert_eq!(got.len(), records.len());
    for (i, (t, v)) in records.iter().enumerate() {
        assert_eq!(got[i].0, *t, "order kept");
        if *t != 4 && *t != 48 {
            assert_eq!(&got[i].1, v, "tag {t} byte for byte");
        }
    }

    // Somebody rolls ^!keys back to an older generation: the client refuses to build on it.
    let mut old = after.clone();
    old.set_generation(3);
    write_keys(&c, &old, &v2).await;
    let g = c.mkdir(&root, "y").await.unwrap();
    let e = c.export(&g.handle).await.unwrap_err();
    assert!(e.to_string().contains("older key manager"), "{e}");
    assert_eq!(keys_of(&c).await.0.generation(), 3, "nothing written");
}

#[tokio::test]
async fn legacy_accounts_share_with_owner_keys() {
    let env = Env::start().await;
    env.legacy_user("old@example.com").await;
    let c = env.login("old@example.com").await;
    assert!(!c.has_key_manager());
    let root = c.root().unwrap().handle;
    let f = c.mkdir(&root, "s").await.unwrap();
    let link = c.export(&f.handle).await.unwrap();
    // The key comes back from `ok` (checked with `ha`) in a fresh session.
    let fresh = env.login("old@example.com").await;
    assert!(fresh
        .read_tree()
        .keys()
        .share_keys
        .contains_key(&f.handle.0));
    assert_eq!(fresh.export(&f.handle).await.unwrap(), link);
    let q = GetUserAttribute {
        u: &c.session().user,
        ua: "^!keys",
        v: 1,
    };
    assert!(c.api().run(&q).await.is_err(), "no ^!keys was created");
}
