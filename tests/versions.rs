//! File versions in all three front-ends: a replaced file becomes the previous version of the
//! new node (`p` with `ov`), nothing goes to the Rubbish Bin; `megacmd list --versions`,
//! `get --version N` and `delete --versions`; the mount shows only current versions; an
//! account that turned versions off (`^!dv`) gets the previous behaviour (Rubbish Bin), also
//! when another client changes the setting while this one runs.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::megacmd::Cmd;
use common::mount::{op, Mount};
use common::{eventually, Env};
use mega_mount::client::{OldVersions, Target, TreeEvent};
use mega_mount::tree::Change;
use serde_json::{json, Value};

/// Sets a non-versioned user attribute through the server's API, as another client would.
async fn replace(
    client: &mega_mount::Client,
    parent: &mega_mount::tree::NodeHandle,
    name: &str,
    body: &[u8],
) -> mega_mount::tree::Node {
    let old = client.read_tree().child_by_name(parent, name).cloned();
    let target = Target {
        parent,
        name,
        replaces: old.as_ref().map(|o| (&o.handle, OldVersions::Keep)),
        mode: None,
    };
    let mut r = body;
    client
        .upload_to(target, &mut r, body.len() as u64, 1_700_000_000, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn megacmd_keeps_replaced_files_as_versions() {
    let env = Env::start().await;
    env.account("v@example.com").await;
    let cmd = Cmd::new(&env, "v@example.com");
    let local = env.dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let f = local.join("notes.txt");
    for (i, body) in ["v0", "v1 longer", "v2 longest!"].iter().enumerate() {
        std::fs::write(&f, body).unwrap();
        let mut args = vec!["put"];
        if i > 0 {
            args.push("--force");
        }
        args.extend([f.to_str().unwrap(), "mega:/"]);
        cmd.ok(&args).await;
    }
    std::fs::write(&f, "v3 current").unwrap();
    cmd.ok(&["put", "--force", f.to_str().unwrap(), "mega:/"])
        .await;

    let listed = cmd
        .ok(&["--json", "list", "--versions", "mega:/"])
        .await
        .json();
    let file = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == json!("notes.txt"))
        .unwrap();
    let versions = file["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "{listed}");
    assert_eq!(file["size"], json!(10));
    let sizes: Vec<&Value> = versions.iter().map(|v| &v["size"]).collect();
    assert_eq!(sizes, vec![&json!(11), &json!(9), &json!(2)]);
    let text = cmd.ok(&["list", "--versions", "mega:/"]).await.stdout;
    assert!(text.contains("(version 3)"), "{text}");
    assert_eq!(
        cmd.ok(&["list", "mega:/"]).await.stdout.lines().count(),
        1,
        "without --versions only the current file"
    );

    // Version 2: the content from two replacements ago.
    let out = env.dir.path().join("old.txt");
    cmd.ok(&[
        "get",
        "--version",
        "2",
        "mega:/notes.txt",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(std::fs::read(&out).unwrap(), b"v1 longer");
    cmd.fails(&["get", "--version", "4", "mega:/notes.txt", "/tmp/x"], 5)
        .await;

    // Nothing went to the Rubbish Bin.
    let client = env.login("v@example.com").await;
    let rubbish = client.rubbish().unwrap().handle;
    assert!(client.children(&rubbish).unwrap().is_empty());

    // delete --versions keeps the current file only.
    cmd.ok(&["delete", "--versions", "mega:/notes.txt"]).await;
    let listed = cmd
        .ok(&["--json", "list", "--versions", "mega:/"])
        .await
        .json();
    assert_eq!(listed[0]["versions"], json!([]));
    cmd.ok(&["cat", "mega:/notes.txt"])
        .await
        .stdout
        .contains("v3 current");
    let client = env.login("v@example.com").await;
    let uq = client.quota().await.unwrap();
    assert_eq!(uq.used, 10, "the versions' storage is freed");
}

#[tokio::test]
async fn versions_are_followed_by_other_clients_and_dv_restores_the_rubbish_bin() {
    let env = Env::start().await;
    let writer = env.account("w@example.com").await;
    let reader = Arc::new(env.login("w@example.com").await);
    let mut watch = reader.watch().unwrap();
    let root = writer.root().unwrap().handle;
    let first = replace(&writer, &root, "a.txt", b"one").await;
    let second = replace(&writer, &root, "a.txt", b"two").await;
    {
        let tree = writer.read_tree();
        assert_eq!(tree.versions(&second.handle)[0].handle, first.handle);
        assert!(tree.is_version(&first.handle));
        assert_eq!(tree.children(&root).len(), 1);
    }

    // The other client sees the old file go and the new one come, and has the version.
    let mut changes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !changes.contains(&Change::Added(second.handle.clone())) {
        let ev = tokio::time::timeout_at(deadline, watch.events.recv())
            .await
            .expect("changes arrive")
            .unwrap();
        if let TreeEvent::Changed(c) = ev {
            changes.extend(c);
        }
    }
    // After the first upload's `Added`, the superseded file is only ever `Removed`: its
    // return as a version is no change to any folder.
    let about_first: Vec<&Change> = changes
        .iter()
        .skip_while(|c| **c != Change::Added(first.handle.clone()))
        .skip(1)
        .filter(|c| match c {
            Change::Added(h) | Change::Updated(h) => *h == first.handle,
            Change::Removed { handle, .. } | Change::Moved { handle, .. } => {
                *handle == first.handle
            }
        })
        .collect();
    assert_eq!(
        about_first,
        vec![&Change::Removed {
            handle: first.handle.clone(),
            parent: Some(root.clone())
        }],
        "{changes:?}"
    );
    {
        let tree = reader.read_tree();
        assert_eq!(tree.children(&root).len(), 1);
        assert_eq!(tree.versions(&second.handle).len(), 1);
        assert_eq!(
            tree.subtree(&root).len(),
            2,
            "subtree() lists current nodes only"
        );
    }

    // Another client turns versions off: the running one follows (`ua` packet) and
    // replaced files go to the Rubbish Bin again.
    assert!(reader.versions_enabled());
    env.set_attr("w@example.com", "^!dv", b"1").await;
    eventually(10, "the ^!dv change is seen", || !reader.versions_enabled()).await;
    let third = replace(&reader, &root, "a.txt", b"three").await;
    let rubbish = reader.rubbish().unwrap().handle;
    let trashed = reader.children(&rubbish).unwrap();
    assert_eq!(trashed.len(), 1);
    assert_eq!(trashed[0].handle, second.handle);
    assert!(reader.read_tree().versions(&third.handle).is_empty());
    // A fresh login reads the setting too.
    assert!(!env.login("w@example.com").await.versions_enabled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mount_keeps_versions_and_shows_only_current_files() {
    let env = Env::start().await;
    env.account("m@example.com").await;
    let m = Mount::start(&env, "m@example.com", &[], true);
    let p = m.path("doc.txt");
    for body in ["first", "second", "third", "fourth"] {
        let p = p.clone();
        op("write doc.txt", move || std::fs::write(&p, body).unwrap()).await;
    }
    let d = m.dir.clone();
    let names = op("readdir", move || {
        std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<Vec<_>>()
    })
    .await;
    assert_eq!(names, vec!["doc.txt"]);
    let client = env.login("m@example.com").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        client.fetch().await.unwrap();
        let done = {
            let tree = client.read_tree();
            let root = tree.root().unwrap().handle.clone();
            tree.child_by_name(&root, "doc.txt")
                .is_some_and(|doc| doc.size == 6 && tree.versions(&doc.handle).len() == 3)
        };
        if done {
            let rubbish = client.rubbish().unwrap().handle;
            assert!(
                client.children(&rubbish).unwrap().is_empty(),
                "nothing in the Rubbish Bin"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "versions not on the server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let p2 = p.clone();
    assert_eq!(
        op("read", move || std::fs::read(&p2).unwrap()).await,
        b"fourth"
    );
}
