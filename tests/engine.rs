//! Client <-> mega-testserver over loopback: login, sessions, tree, transfers, mutations,
//! quota, public links, events, isolation and durability.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{data, eventually, Env, PASSWORD};
use mega_mount::api::session::SavedSession;
use mega_mount::api::{ApiClient, ApiError, ErrorCode};
use mega_mount::client::{download_public, TreeEvent};
use mega_mount::transfer::TransferConfig;
use mega_mount::tree::Change;
use mega_mount::{AuthError, Client, Error};
use mega_testserver::UserOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_v1_and_v2_accounts() {
    let env = Env::start().await;
    env.user(
        "v1@example.com",
        UserOptions {
            v1: true,
            ..Default::default()
        },
    )
    .await;
    env.user("v2@example.com", UserOptions::default()).await;
    for email in ["v1@example.com", "V2@Example.com"] {
        let c = env.login(email).await;
        let tree = c.read_tree();
        assert!(tree.root().is_some() && tree.rubbish().is_some() && tree.inbox().is_some());
        assert_eq!(c.session().email, email.to_lowercase());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_clear_errors() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    for (email, pw) in [("a@example.com", "wrong"), ("nobody@example.com", PASSWORD)] {
        let r = Client::login(env.api_config(), email, pw, None).await;
        assert!(
            matches!(r, Err(Error::Auth(AuthError::WrongPassword))),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_login() {
    let env = Env::start().await;
    let secret = "JBSWY3DPEHPK3PXP";
    env.user(
        "mfa@example.com",
        UserOptions {
            totp_secret: Some(secret.into()),
            ..Default::default()
        },
    )
    .await;
    let r = Client::login(env.api_config(), "mfa@example.com", PASSWORD, None).await;
    assert!(
        matches!(r, Err(Error::Auth(AuthError::MfaRequired))),
        "{r:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let valid: Vec<String> = [now - 30, now, now + 30, now + 60]
        .iter()
        .map(|t| mega_testserver::crypto::totp(secret, *t).unwrap())
        .collect();
    let wrong = (0..10)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    let r = Client::login(env.api_config(), "mfa@example.com", PASSWORD, Some(&wrong)).await;
    assert!(
        matches!(r, Err(Error::Auth(AuthError::MfaRejected))),
        "{r:?}"
    );
    let code = mega_testserver::crypto::totp(secret, now).unwrap();
    let c = Client::login(env.api_config(), "mfa@example.com", PASSWORD, Some(&code))
        .await
        .unwrap();
    assert!(c.read_tree().root().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_save_resume_and_logout() {
    let env = Env::start().await;
    let c = env.account("s@example.com").await;
    let root = c.root().unwrap().handle;
    c.mkdir(&root, "kept").await.unwrap();
    let path = env.dir.path().join("cfg/session.json");
    c.save_session(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(PASSWORD));
    let saved = SavedSession::load(&path).unwrap();
    let resumed = Client::resume(env.api_config(), &saved).await.unwrap();
    assert!(resumed.resolve("/kept").is_ok());
    resumed.logout().await.unwrap();
    let r = Client::resume(env.api_config(), &saved).await;
    assert!(
        matches!(r, Err(Error::Auth(AuthError::SessionExpired))),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_round_trips() {
    let env = Env::start().await;
    let c = env.account("rt@example.com").await;
    let root = c.root().unwrap().handle;
    const K: usize = 1024;
    let sizes = [
        0,
        1,
        16,
        128 * K - 1,
        128 * K,
        128 * K + 1,
        1024 * K + 1,
        20 * 1024 * K,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let body = data(size, i as u8);
        let name = format!("file-{size}.bin");
        let mtime = 1_600_000_000 + i as i64;
        let node = c
            .upload(&root, &name, &mut &body[..], size as u64, mtime, None)
            .await
            .unwrap();
        assert_eq!(node.size, size as u64);
        assert_eq!(node.name, name);
        assert_eq!(node.mtime, mtime, "mtime kept through the fingerprint");
        let back = c.download_to_vec(&node.handle).await.unwrap();
        assert!(back == body, "content of {size} bytes differs");
    }
    // A second client sees the same files with the same content.
    let other = env.login("rt@example.com").await;
    let n = other.resolve("/file-131073.bin").unwrap();
    assert_eq!(
        other.download_to_vec(&n.handle).await.unwrap(),
        data(128 * K + 1, 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_from_a_short_reader_fails_cleanly() {
    let env = Env::start().await;
    let c = env.account("short@example.com").await;
    let root = c.root().unwrap().handle;
    let body = data(1000, 1);
    let r = c.upload(&root, "x", &mut &body[..], 2000, 0, None).await;
    assert!(matches!(r, Err(Error::ShortRead { .. })), "{r:?}");
    assert!(c.resolve("/x").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_rename_move_trash_delete() {
    let env = Env::start().await;
    let c = env.account("m@example.com").await;
    let root = c.root().unwrap().handle;
    let a = c.mkdir(&root, "a").await.unwrap();
    let b = c.mkdir(&a.handle, "b").await.unwrap();
    let f = c
        .upload(&b.handle, "f.txt", &mut &b"hello"[..], 5, 1234, None)
        .await
        .unwrap();
    assert_eq!(c.resolve("/a/b/f.txt").unwrap().handle, f.handle);

    c.rename(&f.handle, "g.txt").await.unwrap();
    assert_eq!(
        c.resolve("/a/b/g.txt").unwrap().mtime,
        1234,
        "rename keeps the mtime"
    );
    c.move_to(&b.handle, &root).await.unwrap();
    assert!(c.resolve("/b/g.txt").is_ok());
    // Moving a folder into its own subtree is refused by the server.
    let r = c.move_to(&root, &b.handle).await;
    assert!(r.is_err());
    let r = c.move_to(&a.handle, &a.handle).await;
    assert_eq!(r.unwrap_err().code(), Some(ErrorCode::Circular));

    c.trash(&f.handle).await.unwrap();
    assert!(c.resolve("/b/g.txt").is_err());
    let rubbish = c.rubbish().unwrap().handle;
    assert!(c
        .children(&rubbish)
        .unwrap()
        .iter()
        .any(|n| n.name == "g.txt"));
    c.delete(&a.handle).await.unwrap();

    // The server agrees: a fresh session sees the same tree.
    let fresh = env.login("m@example.com").await;
    assert!(fresh.resolve("/a").is_err());
    assert!(fresh.resolve("/b").is_ok());
    assert!(fresh.resolve("/b/g.txt").is_err());
    let rubbish = fresh.rubbish().unwrap().handle;
    let g = fresh
        .children(&rubbish)
        .unwrap()
        .into_iter()
        .find(|n| n.name == "g.txt")
        .unwrap();
    assert_eq!(fresh.download_to_vec(&g.handle).await.unwrap(), b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_is_reported_and_enforced() {
    let env = Env::start().await;
    env.user(
        "q@example.com",
        UserOptions {
            quota: 100_000,
            ..Default::default()
        },
    )
    .await;
    let c = env.login("q@example.com").await;
    let root = c.root().unwrap().handle;
    c.upload(&root, "a", &mut &data(60_000, 1)[..], 60_000, 0, None)
        .await
        .unwrap();
    let q = c.quota().await.unwrap();
    assert_eq!((q.total, q.used), (100_000, 60_000));
    let r = c
        .upload(&root, "b", &mut &data(60_000, 2)[..], 60_000, 0, None)
        .await;
    let e = r.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::OverQuota), "{e:?}");
    assert!(c.resolve("/b").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_link_export_and_download_without_login() {
    let env = Env::start().await;
    let c = env.account("l@example.com").await;
    let root = c.root().unwrap().handle;
    let body = data(300_000, 9);
    let f = c
        .upload(
            &root,
            "shared.bin",
            &mut &body[..],
            body.len() as u64,
            0,
            None,
        )
        .await
        .unwrap();
    let link = c.export(&f.handle).await.unwrap();
    assert!(link.starts_with("https://mega.nz/file/"));
    assert_eq!(
        c.export(&f.handle).await.unwrap(),
        link,
        "exporting twice gives the same link"
    );
    let anon = ApiClient::new(env.api_config()).unwrap();
    let mut out = Vec::new();
    let info = download_public(&anon, &link, &mut out, &TransferConfig::default(), None)
        .await
        .unwrap();
    assert_eq!(info.name, "shared.bin");
    assert_eq!(out, body);
    // The legacy form of the same link works too.
    let legacy = link
        .replace("/file/", "/#!")
        .replace('#', "!")
        .replacen("!!", "#!", 1);
    let mut out2 = Vec::new();
    download_public(&anon, &legacy, &mut out2, &TransferConfig::default(), None)
        .await
        .unwrap();
    assert_eq!(out2, body);
    // A link whose key carries a different MAC is a MAC failure, never bad data as good.
    let mega_mount::link::PublicLink::File {
        handle,
        key: Some(mut key),
    } = mega_mount::link::parse(&link).unwrap()
    else {
        panic!("not a file link")
    };
    key.meta_mac[0] ^= 1;
    let bad = mega_mount::link::file_link(&handle, &key);
    let r = download_public(
        &anon,
        &bad,
        &mut Vec::new(),
        &TransferConfig::default(),
        None,
    )
    .await;
    assert!(matches!(r, Err(Error::Integrity { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_a_second_session_reach_the_first() {
    let env = Env::start().await;
    let a = Arc::new(env.account("ev@example.com").await);
    let b = env.login("ev@example.com").await;
    let mut watcher = a.watch().unwrap();
    let root = b.root().unwrap().handle;

    // Own changes are applied locally and not reported again.
    let mine = a.mkdir(&root, "mine").await.unwrap();

    let dir = b.mkdir(&root, "from-b").await.unwrap();
    let f = b
        .upload(&dir.handle, "x.txt", &mut &b"abc"[..], 3, 7, None)
        .await
        .unwrap();
    let a2 = a.clone();
    eventually(5, "upload by B visible to A", || {
        a2.resolve("/from-b/x.txt").is_ok()
    })
    .await;
    b.rename(&f.handle, "y.txt").await.unwrap();
    eventually(5, "rename visible", || a2.resolve("/from-b/y.txt").is_ok()).await;
    b.move_to(&f.handle, &root).await.unwrap();
    eventually(5, "move visible", || {
        a2.resolve("/y.txt").is_ok() && a2.resolve("/from-b/y.txt").is_err()
    })
    .await;
    b.delete(&dir.handle).await.unwrap();
    eventually(5, "delete visible", || a2.resolve("/from-b").is_err()).await;
    assert_eq!(a.download_to_vec(&f.handle).await.unwrap(), b"abc");

    // The watcher reports what it applied (it may send just after the tree changed).
    let mut seen = Vec::new();
    let done = |seen: &Vec<Change>| {
        seen.contains(&Change::Added(dir.handle.clone()))
            && seen
                .iter()
                .any(|c| matches!(c, Change::Moved { handle, .. } if *handle == f.handle))
            && seen
                .iter()
                .any(|c| matches!(c, Change::Removed { handle, .. } if *handle == dir.handle))
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, watcher.events.recv()).await {
            Ok(Some(TreeEvent::Changed(ch))) => seen.extend(ch),
            Ok(Some(other)) => panic!("unexpected watcher event {other:?}"),
            Ok(None) | Err(_) => panic!("missing changes; saw {seen:?}"),
        }
    }
    assert!(
        !seen.contains(&Change::Added(mine.handle.clone())),
        "own echo reported: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_isolated() {
    let env = Env::start().await;
    let a = env.account("iso-a@example.com").await;
    let b = env.account("iso-b@example.com").await;
    let root_a = a.root().unwrap().handle;
    let f = a
        .upload(&root_a, "secret", &mut &b"top"[..], 3, 0, None)
        .await
        .unwrap();
    let b_root = b.root().unwrap().handle;
    for cmd in [
        serde_json::json!({"a": "g", "g": 1, "n": f.handle.0}),
        serde_json::json!({"a": "d", "n": f.handle.0}),
        serde_json::json!({"a": "m", "n": f.handle.0, "t": b_root.0}),
        serde_json::json!({"a": "a", "n": f.handle.0, "at": "AAAA"}),
        serde_json::json!({"a": "l", "n": f.handle.0}),
        serde_json::json!({"a": "p", "t": root_a.0, "n": [{"h": "xxxxxxxx", "t": 1, "a": "AAAA", "k": "AAAA"}]}),
    ] {
        let r = b.api().call(cmd.clone()).await;
        assert!(
            matches!(r, Err(ApiError::Mega(ErrorCode::NotFound))),
            "{cmd}: {r:?}"
        );
    }
    assert_eq!(a.download_to_vec(&f.handle).await.unwrap(), b"top");
    assert!(b.resolve("/secret").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("server");
    let mut cfg = mega_testserver::Config::new(&data_dir);
    let server = mega_testserver::TestServer::start(cfg.clone())
        .await
        .unwrap();
    server
        .add_user("d@example.com", PASSWORD, UserOptions::default())
        .await
        .unwrap();
    let api_cfg = |url: &str| {
        let mut c = mega_mount::api::ApiConfig::with_base_url(url);
        c.retry = common::fast_retry();
        c
    };
    let c = Client::login(api_cfg(server.base_url()), "d@example.com", PASSWORD, None)
        .await
        .unwrap();
    let root = c.root().unwrap().handle;
    let body = data(500_000, 3);
    c.upload(
        &root,
        "durable.bin",
        &mut &body[..],
        body.len() as u64,
        99,
        None,
    )
    .await
    .unwrap();
    let saved = c.saved_session();
    let addr = server.addr();
    server.shutdown().await;
    cfg.listen = addr;
    let server = mega_testserver::TestServer::start(cfg).await.unwrap();
    let mut saved2 = saved.clone();
    saved2.api_url = server.base_url().to_string();
    let c = Client::resume(api_cfg(server.base_url()), &saved2)
        .await
        .unwrap();
    let n = c.resolve("/durable.bin").unwrap();
    assert_eq!(n.mtime, 99);
    assert_eq!(c.download_to_vec(&n.handle).await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_link_export_and_anonymous_access() {
    use mega_mount::PublicFolder;
    let env = Env::start().await;
    let c = env.account("fl@example.com").await;
    let root = c.root().unwrap().handle;
    let pubd = c.mkdir(&root, "pub").await.unwrap();
    let sub = c.mkdir(&pubd.handle, "sub").await.unwrap();
    c.upload(&pubd.handle, "a.txt", &mut &b"alpha"[..], 5, 0, None)
        .await
        .unwrap();
    let big = data(700_000, 2);
    c.upload(
        &sub.handle,
        "b.bin",
        &mut &big[..],
        big.len() as u64,
        0,
        None,
    )
    .await
    .unwrap();
    let private = c
        .upload(&root, "private.txt", &mut &b"no"[..], 2, 0, None)
        .await
        .unwrap();

    let link = c.export(&pubd.handle).await.unwrap();
    assert!(link.starts_with("https://mega.nz/folder/"), "{link}");
    // Added after the export: its key must reach the share too.
    c.upload(&sub.handle, "late.txt", &mut &b"later"[..], 5, 0, None)
        .await
        .unwrap();
    // Moved in after the export, with a subtree: the same.
    let outside = c.mkdir(&root, "outside").await.unwrap();
    c.upload(&outside.handle, "o.txt", &mut &b"moved in"[..], 8, 0, None)
        .await
        .unwrap();
    c.move_to(&outside.handle, &sub.handle).await.unwrap();

    let anon = ApiClient::new(env.api_config()).unwrap();
    let folder = PublicFolder::open(&anon, &link).await.unwrap();
    assert_eq!(folder.root().name, "pub");
    let cfg = TransferConfig::default();
    for (path, want) in [
        ("a.txt", b"alpha".to_vec()),
        ("sub/b.bin", big.clone()),
        ("sub/late.txt", b"later".to_vec()),
        ("sub/outside/o.txt", b"moved in".to_vec()),
    ] {
        let n = folder
            .resolve(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut out = Vec::new();
        folder
            .download(&anon, &n.handle.clone(), &mut out, &cfg, None)
            .await
            .unwrap();
        assert!(out == want, "{path} differs");
    }
    assert_eq!(folder.tree().undecryptable().count(), 0);
    // Nothing outside the folder is reachable through the link.
    let r = anon
        .batch_with(
            vec![serde_json::json!({"a": "g", "g": 1, "n": private.handle.0})],
            &[(
                "n",
                link.split('/').nth(4).unwrap().split('#').next().unwrap(),
            )],
        )
        .await
        .unwrap();
    assert!(
        matches!(r[0], Err(ApiError::Mega(ErrorCode::NotFound))),
        "{r:?}"
    );
    // A wrong key does not open it.
    let wrong = format!(
        "{}#{}",
        link.split('#').next().unwrap(),
        "AAAAAAAAAAAAAAAAAAAAAA"
    );
    assert!(PublicFolder::open(&anon, &wrong).await.is_err());
    // After a new login the share key comes back from `ok`: exporting again gives the same link.
    let again = env.login("fl@example.com").await;
    assert_eq!(again.export(&pubd.handle).await.unwrap(), link);
}

/// A link with an expiry (`l` with `ets`) works until then and is gone after it (the server
/// answers `EEXPIRED`, which reads as "the link has expired"); a link's expiry cannot lie in
/// the past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_expire() {
    let env = Env::start().await;
    let c = env.account("exp@example.com").await;
    let root = c.root().unwrap().handle;
    let mut body: &[u8] = b"short-lived";
    let f = c
        .upload(&root, "f.txt", &mut body, 11, 1_700_000_000, None)
        .await
        .unwrap();
    let folder = c.mkdir(&root, "d").await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(c.export_until(&f.handle, Some(now - 10)).await.is_err());
    let until = now + 3;
    let file_link = c.export_until(&f.handle, Some(until)).await.unwrap();
    let folder_link = c.export_until(&folder.handle, Some(until)).await.unwrap();
    let anon = ApiClient::new(env.api_config()).unwrap();
    let mut out = Vec::new();
    download_public(
        &anon,
        &file_link,
        &mut out,
        &TransferConfig::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(out, b"short-lived");
    mega_mount::PublicFolder::open(&anon, &folder_link)
        .await
        .unwrap();
    // Past the expiry (the server's clock, in whole seconds).
    let wait = (until + 1 - now).max(0) as u64;
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let e = download_public(
        &anon,
        &file_link,
        &mut Vec::new(),
        &TransferConfig::default(),
        None,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    let e = mega_mount::PublicFolder::open(&anon, &folder_link)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
}

/// Every path below `top`, relative to it, sorted (names only: what a copy must reproduce).
fn paths_below(c: &Client, top: &mega_mount::tree::NodeHandle) -> Vec<String> {
    c.checked(|t| {
        let mut rel: std::collections::HashMap<mega_mount::tree::NodeHandle, String> =
            std::collections::HashMap::new();
        let mut out = Vec::new();
        for n in t.subtree(top).into_iter().skip(1) {
            let parent = n.parent.as_ref().and_then(|p| rel.get(p)).cloned();
            let path = match parent {
                Some(p) => format!("{p}/{}", n.name),
                None => n.name.clone(),
            };
            rel.insert(n.handle.clone(), path.clone());
            out.push(path);
        }
        out.sort();
        out
    })
    .unwrap()
}

/// A tree larger than one `p` takes (`COPY_BATCH`) is copied folder by folder, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_larger_than_one_request_is_copied_whole() {
    use mega_mount::client::{Target, COPY_BATCH};
    use mega_testserver::seed::{seed, SeedPlan};
    let env = Env::start().await;
    let email = "bigcopy@example.com";
    env.user(email, UserOptions::default()).await;
    let plan = SeedPlan {
        folders: 30,
        files: COPY_BATCH + 500,
        depth: 2,
    };
    seed(env.server.store(), email, PASSWORD, plan).unwrap();
    let c = env.login(email).await;
    let root = c.root().unwrap().handle;
    let top = c.mkdir(&root, "top").await.unwrap().handle;
    for kid in c.children(&root).unwrap() {
        if kid.handle != top {
            c.move_to(&kid.handle, &top).await.unwrap();
        }
    }
    let source = paths_below(&c, &top);
    assert!(source.len() > COPY_BATCH, "{} nodes", source.len());
    let puts = env.server.stats().commands("p");
    let copy = c
        .copy(
            &top,
            Target {
                parent: &root,
                name: "copy",
                replaces: None,
                mode: None,
            },
        )
        .await
        .unwrap();
    assert!(
        env.server.stats().commands("p") - puts > 1,
        "more than one request"
    );
    assert_eq!(paths_below(&c, &copy.handle), source);
    // What the server holds, seen by a fresh session.
    let fresh = env.login(email).await;
    let copy = fresh
        .view(|t| t.child_by_name(&root, "copy").cloned())
        .unwrap();
    assert_eq!(paths_below(&fresh, &copy.handle), source);
}

/// A file imported into a folder that has a folder link is readable through that link: the
/// import's `cr` names the new node by its `ph`, as the `p` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_an_exported_folder_is_readable_through_its_link() {
    use mega_mount::client::{Linked, Target};
    let env = Env::start().await;
    let owner = env.account("giver@example.com").await;
    let root = owner.root().unwrap().handle;
    let mut body: &[u8] = b"given";
    let f = owner
        .upload(&root, "gift.txt", &mut body, 5, 1_700_000_000, None)
        .await
        .unwrap();
    let file_link = owner.export(&f.handle).await.unwrap();
    let taker = env.account("taker@example.com").await;
    let troot = taker.root().unwrap().handle;
    let public = taker.mkdir(&troot, "public").await.unwrap().handle;
    let folder_link = taker.export(&public).await.unwrap();
    let anon = ApiClient::new(env.api_config()).unwrap();
    let linked = Linked::open(&anon, &file_link).await.unwrap();
    taker
        .import(
            &linked,
            Target {
                parent: &public,
                name: "gift.txt",
                replaces: None,
                mode: None,
            },
        )
        .await
        .unwrap();
    let pf = mega_mount::PublicFolder::open(&anon, &folder_link)
        .await
        .unwrap();
    let kids = pf.children(&pf.root().handle);
    assert_eq!(kids.len(), 1);
    assert_eq!(kids[0].name, "gift.txt", "decryptable through the link");
    let mut out = Vec::new();
    pf.download(
        &anon,
        &kids[0].handle,
        &mut out,
        &TransferConfig::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(out, b"given");
}

/// Uploads into one folder that finish while a `p` into it is on its way are made by one
/// `p`. When that request fails for one element's sake (the file it supersedes was deleted
/// by another session meanwhile), the others are made one by one and only that upload
/// fails; nothing is made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_into_one_folder_share_a_p_and_a_bad_node_fails_alone() {
    use mega_mount::client::{OldVersions, Target};
    use mega_mount::tree::NodeHandle;
    let env = Env::start().await;
    let c = Arc::new(env.account("batch@example.com").await);
    let root = c.root().unwrap().handle;
    let mut body: &[u8] = b"old";
    let x = c
        .upload(&root, "x.txt", &mut body, 3, 1, None)
        .await
        .unwrap()
        .handle;
    let other = env.login("batch@example.com").await;
    let up = |name: &'static str, body: &'static [u8], replaces: Option<NodeHandle>| {
        let (c, root) = (c.clone(), root.clone());
        tokio::spawn(async move {
            let target = Target {
                parent: &root,
                name,
                replaces: replaces.as_ref().map(|h| (h, OldVersions::Keep)),
                mode: None,
            };
            let mut r = body;
            c.upload_to(target, &mut r, body.len() as u64, 1, None)
                .await
        })
    };
    env.server.faults().update(|f| f.cs_hold = vec!["p".into()]);
    let p_before = env.server.stats().commands("p");
    let first = up("first.txt", b"one", None);
    eventually(20, "the first `p` reaching the server", || {
        env.server.stats().held.now() == 1
    })
    .await;
    let x2 = up("x.txt", b"new x", Some(x.clone()));
    let y = up("y.txt", b"why", None);
    eventually(20, "the uploads waiting for the held `p`", || {
        c.files_waiting_for_nodes() == 2
    })
    .await;
    other.delete(&x).await.unwrap();
    env.server.faults().update(|f| f.cs_hold.clear());
    first.await.unwrap().unwrap();
    let y = y.await.unwrap().unwrap();
    let x2 = x2.await.unwrap();
    assert!(x2.is_err(), "a new version of a deleted file: {x2:?}");
    // The first, the batch of two (refused), then each on its own.
    assert_eq!(env.server.stats().commands("p") - p_before, 4);
    let fresh = env.login("batch@example.com").await;
    let mut names: Vec<String> = fresh
        .children(&root)
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    names.sort();
    assert_eq!(names, ["first.txt", "y.txt"]);
    assert_eq!(fresh.download_to_vec(&y.handle).await.unwrap(), b"why");
}
