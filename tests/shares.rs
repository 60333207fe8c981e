//! Folders shared between users, through the engine: key-manager accounts (keys by pending
//! keys, committed to `^!keys` before they are acknowledged), legacy accounts (RSA `k`/`sk`)
//! both ways, writes into a share readable by the owner, access levels, and shares that
//! appear, change and end while the recipient is running.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{befriend, eventually, Env};
use mega_mount::client::contacts::Answer;
use mega_mount::client::TreeEvent;
use mega_mount::tree::{Access, NodeHandle};
use mega_mount::{Client, Error};
use mega_testserver::UserOptions;

async fn legacy(env: &Env, email: &str) -> Client {
    env.legacy_user(email).await;
    env.login(email).await
}

/// A folder `Project` with a file in it, in `owner`'s Cloud Drive.
async fn project(owner: &Client) -> (NodeHandle, NodeHandle) {
    let root = owner.root().unwrap().handle;
    let folder = owner.mkdir(&root, "Project").await.unwrap().handle;
    let mut body: &[u8] = b"the plan";
    let file = owner
        .upload(&folder, "plan.txt", &mut body, 8, 1_700_000_000, None)
        .await
        .unwrap()
        .handle;
    (folder, file)
}

/// alice, her `Project` shared read-write with bob and read-only with carol.
async fn alice_shares_with_bob_and_carol(env: &Env) -> (Client, NodeHandle) {
    let alice = env.account("alice@example.com").await;
    let bob = env.account("bob@example.com").await;
    let carol = env.account("carol@example.com").await;
    befriend(&alice, "alice@example.com", &bob, "bob@example.com").await;
    befriend(&alice, "alice@example.com", &carol, "carol@example.com").await;
    let (folder, _) = project(&alice).await;
    alice
        .share(&folder, "bob@example.com", Access::ReadWrite)
        .await
        .unwrap();
    alice
        .share(&folder, "carol@example.com", Access::Read)
        .await
        .unwrap();
    (alice, folder)
}

/// The recipient's (running) client comes to read `Project/plan.txt` of the share: the
/// share arrives, its key too, and the file downloads and verifies.
async fn reads_the_plan(c: &Client) {
    eventually(10, "the share decrypts", || {
        let t = c.read_tree();
        t.inshares().first().is_some_and(|r| r.name == "Project")
            && t.undecryptable().next().is_none()
    })
    .await;
    let root = inshare(c).unwrap();
    let plan = c
        .read_tree()
        .child_by_name(&root.handle, "plan.txt")
        .cloned()
        .unwrap();
    assert_eq!(c.download_to_vec(&plan.handle).await.unwrap(), b"the plan");
}

/// The share root `recipient` got from `owner_email`, after a fresh fetch.
fn inshare(c: &Client) -> Option<mega_mount::tree::Node> {
    c.shares().1.into_iter().next()
}

#[tokio::test]
async fn key_manager_accounts_share_read_write_and_read_only() {
    let env = Env::start().await;
    let (alice, folder) = alice_shares_with_bob_and_carol(&env).await;
    let (out, _) = alice.shares();
    assert_eq!(out.len(), 2);

    // bob logs in afterwards: the key waits as a pending key, accepted at login.
    let bob = env.login("bob@example.com").await;
    let root = inshare(&bob).expect("the share is listed");
    assert_eq!(root.name, "Project");
    assert_eq!(root.inshare.as_ref().unwrap().access, Access::ReadWrite);
    assert!(bob.read_tree().undecryptable().next().is_none());
    assert_eq!(
        bob.read_tree().path_of(&root.handle),
        "//Shared/alice@example.com/Project"
    );
    let plan = bob
        .read_tree()
        .child_by_name(&root.handle, "plan.txt")
        .cloned()
        .unwrap();
    assert_eq!(
        bob.download_to_vec(&plan.handle).await.unwrap(),
        b"the plan"
    );
    // The key is in bob's ^!keys (trusted) and the pending key is gone.
    assert_eq!(bob.accept_pending_keys().await.unwrap(), 0);
    let again = env.login("bob@example.com").await;
    assert!(
        again.read_tree().undecryptable().next().is_none(),
        "key kept in ^!keys"
    );

    // bob writes into the share; alice reads it with a verified MAC.
    let mut body: &[u8] = b"bob's notes";
    let up = bob
        .upload(
            &root.handle,
            "notes.txt",
            &mut body,
            11,
            1_700_000_001,
            None,
        )
        .await
        .unwrap();
    alice.fetch().await.unwrap();
    let n = alice
        .read_tree()
        .child_by_name(&folder, "notes.txt")
        .cloned()
        .unwrap();
    assert_eq!(n.handle, up.handle);
    assert_eq!(
        alice.download_to_vec(&n.handle).await.unwrap(),
        b"bob's notes"
    );
    // carol, with the same share read-only, reads it too, and cannot write.
    let carol = env.login("carol@example.com").await;
    let croot = inshare(&carol).unwrap();
    let cn = carol
        .read_tree()
        .child_by_name(&croot.handle, "notes.txt")
        .cloned()
        .unwrap();
    assert_eq!(
        carol.download_to_vec(&cn.handle).await.unwrap(),
        b"bob's notes"
    );
    let mut body: &[u8] = b"nope";
    let e = carol
        .upload(&croot.handle, "x.txt", &mut body, 4, 0, None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    assert!(carol.mkdir(&croot.handle, "d").await.is_err());
}

#[tokio::test]
async fn legacy_and_key_manager_accounts_share_both_ways() {
    let env = Env::start().await;
    let old = legacy(&env, "old@example.com").await;
    let km = env.account("km@example.com").await;
    // legacy -> key manager: the key comes RSA-encrypted (sk) and is recorded in ^!keys.
    befriend(&old, "old@example.com", &km, "km@example.com").await;
    let (folder, _) = project(&old).await;
    old.share(&folder, "km@example.com", Access::Read)
        .await
        .unwrap();
    let km = {
        drop(km);
        env.login("km@example.com").await
    };
    let root = inshare(&km).expect("listed");
    let plan = km
        .read_tree()
        .child_by_name(&root.handle, "plan.txt")
        .cloned()
        .unwrap();
    assert_eq!(km.download_to_vec(&plan.handle).await.unwrap(), b"the plan");
    let a = km
        .api()
        .run(&mega_mount::api::attrs::GetUserAttribute {
            u: &km.session().user,
            ua: "^!keys",
            v: 1,
        })
        .await
        .unwrap();
    let blob = mega_mount::crypto::b64::decode(&a.av, "av").unwrap();
    let c =
        mega_mount::crypto::keymgr::KeysContainer::open(&km.session().master_key, &blob).unwrap();
    let rec = c
        .share_keys()
        .into_iter()
        .find(|r| mega_mount::crypto::b64::encode(&r.node) == root.handle.0)
        .expect("the legacy share's key is recorded in ^!keys");
    assert_eq!(rec.flags, 0, "untrusted: it came from sk");
    // key manager -> legacy: no Cu25519 key on the other side, so RSA again.
    let (kfolder, _) = project(&km).await;
    km.share(&kfolder, "old@example.com", Access::Full)
        .await
        .unwrap();
    let old = env.login("old@example.com").await;
    let root = inshare(&old).expect("listed");
    assert_eq!(root.inshare.as_ref().unwrap().access, Access::Full);
    let plan = old
        .read_tree()
        .child_by_name(&root.handle, "plan.txt")
        .cloned()
        .unwrap();
    assert_eq!(
        old.download_to_vec(&plan.handle).await.unwrap(),
        b"the plan"
    );
}

#[tokio::test]
async fn a_share_appears_changes_and_ends_while_the_recipient_runs() {
    let env = Env::start().await;
    let alice = env.account("a@example.com").await;
    let bob = Arc::new(env.account("b@example.com").await);
    befriend(&alice, "a@example.com", &bob, "b@example.com").await;
    let mut watch = bob.watch().unwrap();
    let (folder, _) = project(&alice).await;
    alice
        .share(&folder, "b@example.com", Access::Read)
        .await
        .unwrap();
    eventually(10, "the share appears, decrypted", || {
        bob.shares().1.first().is_some_and(|r| r.name == "Project")
            && bob.read_tree().undecryptable().next().is_none()
    })
    .await;
    // A later change by the owner shows up like any remote change.
    let mut body: &[u8] = b"v2";
    alice
        .upload(&folder, "later.txt", &mut body, 2, 0, None)
        .await
        .unwrap();
    eventually(10, "the owner's new file", || {
        let t = bob.read_tree();
        let root = t.inshares().first().map(|r| r.handle.clone());
        root.is_some_and(|r| t.child_by_name(&r, "later.txt").is_some())
    })
    .await;
    alice
        .share(&folder, "b@example.com", Access::Full)
        .await
        .unwrap();
    eventually(10, "the new access", || {
        bob.shares()
            .1
            .first()
            .and_then(|r| r.inshare.clone())
            .map(|s| s.access)
            == Some(Access::Full)
    })
    .await;
    alice.unshare(&folder, Some("b@example.com")).await.unwrap();
    eventually(10, "the share ends", || bob.shares().1.is_empty()).await;
    assert!(alice.shares().0.is_empty());
    // The watcher is still alive.
    while let Ok(Some(ev)) =
        tokio::time::timeout(Duration::from_millis(200), watch.events.recv()).await
    {
        assert!(!matches!(ev, TreeEvent::Stopped(_)), "{ev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megacmd_shares_lists_reads_writes_and_syncs_incoming_shares() {
    use common::megacmd::Cmd;
    let env = Env::start().await;
    for u in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        env.user(u, UserOptions::default()).await;
    }
    let (alice, bob, carol) = (
        Cmd::new(&env, "alice@example.com"),
        Cmd::new(&env, "bob@example.com"),
        Cmd::new(&env, "carol@example.com"),
    );
    let local = env.dir.path().join("src");
    std::fs::create_dir_all(local.join("Project")).unwrap();
    std::fs::write(local.join("Project/plan.txt"), "the plan").unwrap();
    alice
        .ok(&[
            "put",
            "-r",
            local.join("Project").to_str().unwrap(),
            "mega:/",
        ])
        .await;
    // Contacts first (sharing with anyone else only invites them).
    for (c, email) in [(&bob, "bob@example.com"), (&carol, "carol@example.com")] {
        alice.ok(&["contacts", "invite", email]).await;
        c.ok(&["contacts", "accept", "alice@example.com"]).await;
    }
    alice
        .ok(&[
            "share",
            "mega:/Project",
            "bob@example.com",
            "--access",
            "readwrite",
        ])
        .await;
    alice
        .ok(&["share", "mega:/Project", "carol@example.com"])
        .await;
    let out = alice.ok(&["shares"]).await.stdout;
    assert!(
        out.contains("out  readwrite  mega:/Project  with bob@example.com"),
        "{out}"
    );
    assert!(
        out.contains("out  read       mega:/Project  with carol@example.com"),
        "{out}"
    );

    let shares = bob.ok(&["--json", "shares"]).await.json();
    assert_eq!(
        shares["incoming"][0]["path"],
        serde_json::json!("mega://Shared/alice@example.com/Project")
    );
    assert_eq!(
        shares["incoming"][0]["access"],
        serde_json::json!("readwrite")
    );
    let ls = bob.ok(&["ls", "mega://Shared/"]).await.stdout;
    assert!(ls.contains("mega://Shared/alice@example.com/"), "{ls}");
    let ls = bob
        .ok(&["ls", "mega://Shared/alice@example.com/Project/"])
        .await
        .stdout;
    assert!(ls.contains("plan.txt"), "{ls}");
    let got = env.dir.path().join("got.txt");
    bob.ok(&[
        "get",
        "mega://Shared/alice@example.com/Project/plan.txt",
        got.to_str().unwrap(),
    ])
    .await;
    assert_eq!(std::fs::read(&got).unwrap(), b"the plan");
    let mine = env.dir.path().join("bob.txt");
    std::fs::write(&mine, "from bob").unwrap();
    bob.ok(&[
        "put",
        mine.to_str().unwrap(),
        "mega://Shared/alice@example.com/Project/",
    ])
    .await;
    assert_eq!(
        alice.ok(&["cat", "mega:/Project/bob.txt"]).await.stdout,
        "from bob"
    );
    // carol may only read.
    let mine = env.dir.path().join("carol.txt");
    std::fs::write(&mine, "from carol").unwrap();
    let o = carol
        .run(&[
            "put",
            mine.to_str().unwrap(),
            "mega://Shared/alice@example.com/Project/",
        ])
        .await;
    assert_ne!(o.code, 0, "a read-only share refuses uploads: {}", o.stderr);
    assert!(
        o.stderr.contains("ermission") || o.stderr.contains("access"),
        "{}",
        o.stderr
    );

    // Two-way sync on a folder inside the incoming share.
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("synced.txt"), "both ways").unwrap();
    let filetime = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(work.join("synced.txt"))
        .unwrap()
        .set_modified(filetime)
        .unwrap();
    bob.ok(&[
        "sync",
        "--two-way",
        work.to_str().unwrap(),
        "mega://Shared/alice@example.com/Project",
    ])
    .await;
    assert!(work.join("plan.txt").exists() && work.join("bob.txt").exists());
    assert_eq!(
        alice.ok(&["cat", "mega:/Project/synced.txt"]).await.stdout,
        "both ways"
    );

    // carol leaves; alice ends bob's share.
    carol
        .ok(&["unshare", "mega://Shared/alice@example.com/Project"])
        .await;
    assert!(!carol.ok(&["shares"]).await.stdout.contains("Project"));
    alice
        .ok(&["unshare", "mega:/Project", "bob@example.com"])
        .await;
    assert!(alice.ok(&["shares"]).await.stdout.trim().is_empty());
    bob.fails(&["ls", "mega://Shared/alice@example.com/Project/"], 5)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mount_shows_shares_with_their_access_levels() {
    use common::mount::{eventually_on_mount, op, Mount};
    let env = Env::start().await;
    let (alice, folder) = alice_shares_with_bob_and_carol(&env).await;

    let bob = Mount::start(&env, "bob@example.com", &[], true);
    let d = bob.dir.clone();
    let top = op("readdir", move || {
        let mut v: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    })
    .await;
    assert_eq!(top, vec!["Shared with me"]);
    let share = bob.path("Shared with me/alice@example.com/Project");
    let p = share.join("plan.txt");
    assert_eq!(
        op("read", move || std::fs::read(p).unwrap()).await,
        b"the plan"
    );
    // bob writes (read-write); alice reads it with a verified MAC.
    let p = share.join("from-bob.txt");
    op("write", move || std::fs::write(p, "hello alice").unwrap()).await;
    alice.fetch().await.unwrap();
    let n = alice
        .read_tree()
        .child_by_name(&folder, "from-bob.txt")
        .cloned()
        .unwrap();
    assert_eq!(
        alice.download_to_vec(&n.handle).await.unwrap(),
        b"hello alice"
    );
    // ...but may not delete (full access needed): refused before anything is sent.
    let p = share.join("plan.txt");
    let e = op("rm", move || std::fs::remove_file(p).unwrap_err()).await;
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    // Nor change a file's attributes alone (MEGA needs full access for that); writing it
    // makes a new version, whose mtime the writes set.
    let p = share.join("plan.txt");
    let e = op("touch", move || {
        let f = std::fs::File::open(p).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000))
            .unwrap_err()
    })
    .await;
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    let p = share.join("plan.txt");
    op("overwrite", move || {
        std::fs::write(p, "bob's plan").unwrap()
    })
    .await;
    alice.fetch().await.unwrap();
    let plan = alice
        .read_tree()
        .child_by_name(&folder, "plan.txt")
        .cloned()
        .unwrap();
    assert_eq!(
        alice.download_to_vec(&plan.handle).await.unwrap(),
        b"bob's plan"
    );
    let old = alice.read_tree().versions(&plan.handle)[0].handle.clone();
    assert_eq!(
        alice.download_to_vec(&old).await.unwrap(),
        b"the plan",
        "alice's content stays as the previous version"
    );
    // Moving out of the share into bob's own drive is not a MEGA move: EXDEV, so that mv(1)
    // copies instead.
    let (from, to) = (share.join("plan.txt"), bob.path("plan.txt"));
    let e = op("rename", move || std::fs::rename(from, to).unwrap_err()).await;
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
    // The virtual folders cannot be changed.
    let p = bob.path("Shared with me/new");
    let e = op("mkdir", move || std::fs::create_dir(p).unwrap_err()).await;
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");

    // alice's later change shows up within 2 seconds.
    let mut body: &[u8] = b"later";
    alice
        .upload(&folder, "later.txt", &mut body, 5, 0, None)
        .await
        .unwrap();
    let p = share.join("later.txt");
    eventually_on_mount(2, "alice's new file", move || p.exists()).await;

    // A share made while bob is mounted appears (its key arrives by pending keys).
    let root = alice.root().unwrap().handle;
    let second = alice.mkdir(&root, "Second").await.unwrap().handle;
    let mut body: &[u8] = b"second";
    alice
        .upload(&second, "s.txt", &mut body, 6, 0, None)
        .await
        .unwrap();
    alice
        .share(&second, "bob@example.com", Access::Read)
        .await
        .unwrap();
    let p = bob.path("Shared with me/alice@example.com/Second/s.txt");
    eventually_on_mount(10, "the new share, readable", move || {
        std::fs::read(&p).is_ok_and(|b| b == b"second")
    })
    .await;

    // carol's share is read-only: nothing can be written, and it shows.
    let carol = Mount::start(&env, "carol@example.com", &[], true);
    let cshare = carol.path("Shared with me/alice@example.com/Project");
    let p = cshare.join("nope.txt");
    let e = op("create", move || std::fs::write(p, "x").unwrap_err()).await;
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    let p = cshare.join("plan.txt");
    let mode = op("stat", move || {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode()
    })
    .await;
    assert_eq!(mode & 0o222, 0, "no write bits: {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shares_folder_can_be_renamed_hidden_and_yields_to_a_real_folder() {
    use common::mount::{op, Mount};
    let env = Env::start().await;
    let alice = env.account("alice@example.com").await;
    let bob = env.account("bob@example.com").await;
    befriend(&alice, "alice@example.com", &bob, "bob@example.com").await;
    let (folder, _) = project(&alice).await;
    alice
        .share(&folder, "bob@example.com", Access::Read)
        .await
        .unwrap();
    let root = bob.root().unwrap().handle;
    bob.mkdir(&root, "Shared with me").await.unwrap();
    let list = |m: &Mount| {
        let d = m.dir.clone();
        op("readdir", move || {
            let mut v: Vec<String> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        })
    };
    let m = Mount::start(&env, "bob@example.com", &[], true);
    assert_eq!(
        list(&m).await,
        vec!["Shared with me", "Shared with me (incoming)"],
        "the real folder keeps its name"
    );
    let p = m.path("Shared with me (incoming)/alice@example.com/Project/plan.txt");
    assert_eq!(
        op("read", move || std::fs::read(p).unwrap()).await,
        b"the plan"
    );
    drop(m);
    let m = Mount::start(&env, "bob@example.com", &["-o", "shares=Incoming"], true);
    assert_eq!(list(&m).await, vec!["Incoming", "Shared with me"]);
    drop(m);
    let m = Mount::start(&env, "bob@example.com", &["-o", "shares="], true);
    assert_eq!(list(&m).await, vec!["Shared with me"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shares_folder_comes_with_the_first_share_and_goes_with_the_last() {
    use common::mount::{eventually_on_mount, Mount};
    let env = Env::start().await;
    let alice = env.account("alice@example.com").await;
    let bob = env.account("bob@example.com").await;
    befriend(&alice, "alice@example.com", &bob, "bob@example.com").await;
    drop(bob);
    let m = Mount::start(&env, "bob@example.com", &[], true);
    let names = {
        let d = m.dir.clone();
        move || -> Vec<String> {
            std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        }
    };
    assert!(common::mount::op("readdir", names.clone()).await.is_empty());
    let (folder, _) = project(&alice).await;
    alice
        .share(&folder, "bob@example.com", Access::Read)
        .await
        .unwrap();
    let n = names.clone();
    eventually_on_mount(10, "the virtual folder appears", move || {
        n() == vec!["Shared with me".to_string()]
    })
    .await;
    alice
        .unshare(&folder, Some("bob@example.com"))
        .await
        .unwrap();
    eventually_on_mount(10, "the virtual folder goes", move || names().is_empty()).await;
}

#[tokio::test]
async fn a_folder_shared_before_its_recipient_has_an_account() {
    let env = Env::start().await;
    let alice = Arc::new(env.account("alice@example.com").await);
    let _alice_watch = alice.watch().unwrap();
    let (folder, _) = project(&alice).await;
    alice
        .share(&folder, "Newbie@example.com", Access::ReadWrite)
        .await
        .unwrap();
    let (out, _) = alice.shares();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].user, "newbie@example.com",
        "pending: known by address"
    );
    // A fresh session sees the pending share too (`ps`/`opc`).
    let again = env.login("alice@example.com").await;
    assert_eq!(again.shares().0[0].user, "newbie@example.com");
    drop(again);

    // The address gets an account and finds alice's contact request; nothing is shared
    // before it accepts. Then alice's running client sends the key (pending keys) and
    // forgets the pending record; the newcomer reads the folder.
    env.user("newbie@example.com", UserOptions::default()).await;
    let newbie = Arc::new(env.login("newbie@example.com").await);
    assert!(
        newbie.shares().1.is_empty(),
        "not before the request is accepted"
    );
    assert!(newbie
        .requests()
        .iter()
        .any(|r| !r.outgoing && r.email == "alice@example.com"));
    let _newbie_watch = newbie.watch().unwrap();
    newbie
        .answer_invitation("alice@example.com", Answer::Accept)
        .await
        .unwrap();
    reads_the_plan(&newbie).await;
    eventually(10, "alice lists the user, not the address", || {
        let (out, _) = alice.shares();
        out.len() == 1 && !out[0].user.contains('@')
    })
    .await;
    assert_eq!(
        alice.complete_pending_outshares().await.unwrap(),
        0,
        "nothing left"
    );
}

/// Another session of the same account accepts the key first (and acknowledges it): this
/// one learns it from the `ua` packet for `^!keys`, not from pending keys, and the share's
/// nodes become readable.
#[tokio::test]
async fn a_key_committed_by_another_session_reaches_a_running_one() {
    let env = Env::start().await;
    let alice = env.account("alice@example.com").await;
    let running = Arc::new(env.account("bob@example.com").await);
    befriend(&alice, "alice@example.com", &running, "bob@example.com").await;
    let (folder, _) = project(&alice).await;
    alice
        .share(&folder, "bob@example.com", Access::Read)
        .await
        .unwrap();
    // The other session logs in: it accepts the pending key into ^!keys and acknowledges it.
    let other = env.login("bob@example.com").await;
    assert!(other.read_tree().undecryptable().next().is_none());
    assert_eq!(
        other.accept_pending_keys().await.unwrap(),
        0,
        "nothing pending any more"
    );
    // The running session now follows the channel from before the share.
    let _watch = running.watch().unwrap();
    eventually(10, "the share is readable without pending keys", || {
        let t = running.read_tree();
        t.inshares().first().is_some_and(|r| r.name == "Project")
            && t.undecryptable().next().is_none()
    })
    .await;
}

/// Trust: contacts' keys are pinned as MEGA's apps pin them. The first share to bob records
/// his Ed25519 (SEEN) and Cu25519 (SIGNATURE) keys in alice's authrings (`^!keys` tags 32/33,
/// next to a record another client wrote, kept byte for byte). When the server then presents
/// other keys for bob, a share to him is refused with an error naming him and no key is sent;
/// `contacts` shows him as changed with the new fingerprint; once alice verifies (having
/// compared fingerprints with him), the share goes through and he is listed as verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_changed_key_refuses_the_share_until_it_is_verified() {
    use mega_mount::api::attrs::{GetUserAttribute, PutVersionedAttribute};
    use mega_mount::client::contacts::Trust;
    use mega_mount::crypto::authring::{AuthRing, Method};
    use mega_mount::crypto::b64;
    use mega_mount::crypto::keymgr::{tag, KeysContainer};
    let env = Env::start().await;
    let alice = env.account("alice@example.com").await;
    let bob = env.account("bob@example.com").await;
    befriend(&alice, "alice@example.com", &bob, "bob@example.com").await;
    drop(bob);
    let keys_of = |c: &Client| {
        let (api, user, mk) = (
            c.api().clone(),
            c.session().user.clone(),
            c.session().master_key.clone(),
        );
        async move {
            let a = api
                .run(&GetUserAttribute {
                    u: &user,
                    ua: "^!keys",
                    v: 1,
                })
                .await
                .unwrap();
            let blob = b64::decode(&a.av, "av").unwrap();
            (KeysContainer::open(&mk, &blob).unwrap(), a.v)
        }
    };
    // A record another client wrote (someone else, with a trust byte we do not know).
    let (mut c, version) = keys_of(&alice).await;
    let mut foreign = vec![7u8; 8];
    foreign.extend([9u8; 20]);
    foreign.push(0x12);
    let mut ring = AuthRing::parse(&foreign).unwrap();
    assert!(c.set_authring(tag::AUTHRING_ED25519, &ring));
    alice
        .api()
        .run(&PutVersionedAttribute {
            name: "^!keys",
            value: b64::encode(&c.seal(&alice.session().master_key, None)),
            version: Some(&version),
        })
        .await
        .unwrap();

    let (folder, _) = project(&alice).await;
    alice
        .share(&folder, "bob@example.com", Access::Read)
        .await
        .unwrap();
    let bob_handle = alice
        .read_tree()
        .user_by_email("bob@example.com")
        .unwrap()
        .to_string();
    let bob_raw: [u8; 8] = b64::decode(&bob_handle, "u").unwrap().try_into().unwrap();
    let (c, _) = keys_of(&alice).await;
    let ed = c.authring(tag::AUTHRING_ED25519).unwrap();
    let cu = c.authring(tag::AUTHRING_CU25519).unwrap();
    assert_eq!(ed.get(&bob_raw).unwrap().method, Method::Seen);
    assert_eq!(cu.get(&bob_raw).unwrap().method, Method::Signature);
    assert_eq!(
        ed.get(&[7; 8]),
        ring.get(&[7; 8]),
        "another client's record kept"
    );
    let first = alice.contacts().await.unwrap();
    let bob = first.iter().find(|c| c.user == bob_handle).unwrap();
    assert_eq!(bob.trust, Trust::Seen);
    let old_fp = bob.fingerprint.clone().unwrap();

    // The server presents other keys for bob.
    env.server
        .substitute_public_keys("bob@example.com")
        .unwrap();
    let root = alice.root().unwrap().handle;
    let second = alice.mkdir(&root, "Second").await.unwrap().handle;
    let e = alice
        .share(&second, "bob@example.com", Access::Read)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::KeyChanged { who } if who == "bob@example.com"),
        "{e}"
    );
    let sent: i64 = env
        .server
        .store()
        .lock()
        .query_row(
            "SELECT COUNT(*) FROM pending_keys WHERE node = ?1",
            [&second.0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sent, 0, "a key went to the changed key");
    assert!(alice.shares().0.iter().all(|s| s.node != second));
    // The pinned record was not overwritten.
    let (c, _) = keys_of(&alice).await;
    assert_eq!(c.authring(tag::AUTHRING_ED25519).unwrap(), ed);

    // megacmd: listed as changed, with the fingerprint of the key presented now.
    let cmd = common::megacmd::Cmd::new(&env, "alice@example.com");
    let listed = cmd.ok(&["contacts", "--json"]).await.json();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["email"] == "bob@example.com")
        .unwrap()
        .clone();
    assert_eq!(row["trust"], "CHANGED");
    let new_fp = row["fingerprint"].as_str().unwrap().to_string();
    assert_ne!(new_fp, old_fp);
    assert_eq!(new_fp.len(), 49, "10 groups of 4 hex digits: {new_fp}");
    cmd.fails(&["share", "mega:/Second", "bob@example.com"], 12)
        .await;
    // Verified after comparing fingerprints: the share goes through.
    let o = cmd.ok(&["contacts", "verify", "bob@example.com"]).await;
    assert!(o.stdout.contains(&new_fp), "{}", o.stdout);
    alice
        .share(&second, "bob@example.com", Access::Read)
        .await
        .unwrap();
    let text = cmd.ok(&["contacts"]).await.stdout;
    assert!(
        text.lines().any(|l| l.contains("bob@example.com")
            && l.contains("verified")
            && l.contains(&new_fp)),
        "{text}"
    );
    let (c, _) = keys_of(&alice).await;
    ring = c.authring(tag::AUTHRING_ED25519).unwrap();
    assert_eq!(ring.get(&bob_raw).unwrap().method, Method::Fingerprint);
    assert_eq!(ring.get(&[7; 8]).unwrap().method, Method::Other(0x12));
}

/// A server-side copy takes a file by its handle: only one the copier can read. A file of a
/// share is copied into the recipient's own drive (readable, the same content); a file of
/// another account that shares nothing with the copier is refused.
#[tokio::test]
async fn copies_need_read_access_to_the_source() {
    use mega_mount::client::Target;
    let env = Env::start().await;
    let (alice, folder) = alice_shares_with_bob_and_carol(&env).await;
    let plan = alice
        .view(|t| t.child_by_name(&folder, "plan.txt").cloned())
        .unwrap();
    let carol = env.login("carol@example.com").await;
    let croot = carol.root().unwrap().handle;
    let copy = carol
        .copy(
            &plan.handle,
            Target {
                parent: &croot,
                name: "mine.txt",
                replaces: None,
                mode: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        carol.download_to_vec(&copy.handle).await.unwrap(),
        b"the plan"
    );
    // dave shares nothing with alice: her file's handle gets him nothing.
    let dave = env.account("dave@example.com").await;
    let droot = dave.root().unwrap().handle;
    let raw = mega_mount::api::commands::PutNodes {
        t: &droot.0,
        n: vec![mega_mount::api::commands::NewNode {
            h: plan.handle.0.clone(),
            t: 0,
            a: plan.attrs.clone(),
            k: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            ov: None,
            p: None,
            ph: None,
            fa: None,
        }],
        i: "copy-test",
        vb: None,
        cr: None,
        vw: None,
    };
    let e = dave.api().run(&raw).await.unwrap_err();
    assert!(
        matches!(
            e,
            mega_mount::api::ApiError::Mega(mega_mount::api::ErrorCode::NotFound)
        ),
        "{e:?}"
    );
}

/// A writable folder link (`link --writable`): with its write key, a client without a
/// session may add to the folder (`p` with `&n=<handle><key>`, run as the owner), nowhere
/// else; without the key, or with another, it may only read. The link reads like a plain one.
#[tokio::test]
async fn writable_folder_links_take_writes_with_their_key_only() {
    use mega_mount::api::commands::{NewNode, PutNodes};
    use mega_mount::api::{ApiClient, ApiError, ErrorCode};
    let env = Env::start().await;
    let alice = env.account("alice@example.com").await;
    let (folder, _) = project(&alice).await;
    let root = alice.root().unwrap().handle;
    let other = alice.mkdir(&root, "Other").await.unwrap().handle;
    let link = alice.export_writable(&folder, None).await.unwrap();
    let (plain, write_key) = link.rsplit_once(':').unwrap();
    assert!(!write_key.is_empty() && plain.starts_with("https://mega.nz/folder/"));
    let ph = &plain["https://mega.nz/folder/".len()..][..8];
    let anon = ApiClient::new(env.api_config()).unwrap();
    // It reads like a plain link (the write key is ignored for reading).
    let pf = mega_mount::PublicFolder::open(&anon, &link).await.unwrap();
    assert_eq!(pf.root().name, "Project");
    fn new_folder(t: &str) -> PutNodes<'_> {
        PutNodes {
            t,
            n: vec![NewNode {
                h: "xxxxxxxx".into(),
                t: 1,
                a: "AAAAAAAAAAAAAAAAAAAAAA".into(),
                k: "AAAAAAAAAAAAAAAAAAAAAA".into(),
                ov: None,
                p: None,
                ph: None,
                fa: None,
            }],
            i: "wl-test",
            vb: None,
            cr: None,
            vw: None,
        }
    }
    let refused = |r: Result<_, ApiError>| matches!(r, Err(ApiError::Mega(ErrorCode::Access)));
    let n_ok = format!("{ph}{write_key}");
    let made = anon
        .run_with(&new_folder(&folder.0), &[("n", n_ok.as_str())])
        .await
        .unwrap();
    assert_eq!(made.f.len(), 1);
    assert_eq!(made.f[0].p.as_deref(), Some(folder.0.as_str()));
    assert!(refused(
        anon.run_with(&new_folder(&other.0), &[("n", n_ok.as_str())])
            .await
    ));
    assert!(refused(
        anon.run_with(&new_folder(&folder.0), &[("n", ph)]).await
    ));
    let wrong = format!("{ph}AAAAAAAAAAAAAAAAAAAAAA");
    assert!(refused(
        anon.run_with(&new_folder(&folder.0), &[("n", wrong.as_str())])
            .await
    ));
    // Files have no writable links.
    let plan = alice
        .view(|t| t.child_by_name(&folder, "plan.txt").cloned())
        .unwrap();
    assert!(alice.export_writable(&plan.handle, None).await.is_err());
}

/// Sharing with an account that is not a contact works as MEGA's apps do it: a contact
/// request goes out and the share is pending; the other side sees nothing of the folder
/// until it accepts; then the share appears and its key comes from the owner's running
/// client, to the new contact only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_with_a_non_contact_invites_them_first() {
    use mega_mount::client::shares::Shared;
    let env = Env::start().await;
    let alice = Arc::new(env.account("alice@example.com").await);
    let _alice_watch = alice.watch().unwrap();
    let bob = Arc::new(env.account("bob@example.com").await);
    let (folder, _) = project(&alice).await;
    let done = alice
        .share(&folder, "bob@example.com", Access::Read)
        .await
        .unwrap();
    assert_eq!(done, Shared::Pending);
    bob.fetch().await.unwrap();
    assert!(bob.shares().1.is_empty(), "nothing before accepting");
    assert!(bob
        .requests()
        .iter()
        .any(|r| !r.outgoing && r.email == "alice@example.com"));
    // The key is not sent to someone who has not accepted.
    assert_eq!(alice.complete_pending_outshares().await.unwrap(), 0);

    let _bob_watch = bob.watch().unwrap();
    bob.answer_invitation("alice@example.com", Answer::Accept)
        .await
        .unwrap();
    reads_the_plan(&bob).await;
    // Now a contact: a second share is at once.
    let root = alice.root().unwrap().handle;
    let second = alice.mkdir(&root, "Second").await.unwrap().handle;
    let done = alice
        .share(&second, "bob@example.com", Access::Read)
        .await
        .unwrap();
    assert_eq!(done, Shared::Now);
}
