//! Interop with the crate `mega` 0.8 (Hirevo/mega-rs), an independent Rust client that reads
//! the key manager: it logs in to a key-manager account on mega-testserver, lists its files
//! and a folder another account shared with it (the share key from `^!keys` tag 48, which our
//! client committed when it accepted the pending key), and downloads both.
//!
//! The driver (tests/interop/mega-rs) is built by scripts/test.sh under target/tools/build;
//! `MEGA_RS_DRIVER` overrides the path. Without it the test says so and passes, unless
//! `MEGA_REQUIRE_MEGA_RS` is set (as the test script sets it).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Env, PASSWORD};
use mega_mount::tree::Access;
use serde_json::Value;

fn driver() -> Option<PathBuf> {
    let p = std::env::var_os("MEGA_RS_DRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/tools/build/release/mega-rs-driver")
        });
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("MEGA_REQUIRE_MEGA_RS").is_none(),
        "{}: the mega-rs driver is missing (scripts/test.sh builds it)",
        p.display()
    );
    eprintln!(
        "skipped: {} not built (scripts/test.sh builds it)",
        p.display()
    );
    None
}

async fn run(driver: &PathBuf, env: &Env, email: &str, args: &[&str]) -> String {
    let mut c = tokio::process::Command::new(driver);
    c.arg(env.server.base_url())
        .arg(email)
        .arg(PASSWORD)
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("mega-rs-driver timed out")
        .unwrap();
    assert!(
        out.status.success(),
        "mega-rs-driver {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mega_rs_reads_a_key_manager_account_and_a_share() {
    let Some(driver) = driver() else { return };
    let env = Env::start().await;
    let alice = env.account("alice@example.com").await;
    let bob = env.account("bob@example.com").await;
    common::befriend(&alice, "alice@example.com", &bob, "bob@example.com").await;
    // bob's own file.
    let root = bob.root().unwrap().handle;
    let mut body: &[u8] = b"bob's own";
    let own = bob
        .upload(&root, "own.txt", &mut body, 9, 0, None)
        .await
        .unwrap();
    // A folder alice shares with bob, with a file.
    let aroot = alice.root().unwrap().handle;
    let folder = alice.mkdir(&aroot, "Shared stuff").await.unwrap().handle;
    let content = common::data(300_000, 7);
    let mut r: &[u8] = &content;
    let shared = alice
        .upload(&folder, "big.bin", &mut r, content.len() as u64, 0, None)
        .await
        .unwrap();
    alice
        .share(&folder, "bob@example.com", Access::Read)
        .await
        .unwrap();
    // bob's client accepts the pending key into ^!keys (mega-rs reads only tag 48).
    drop(bob);
    let bob = env.login("bob@example.com").await;
    assert!(bob.read_tree().undecryptable().next().is_none());

    let listed = run(&driver, &env, "bob@example.com", &["list"]).await;
    let nodes: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_handle = |h: &str| nodes.iter().find(|n| n["handle"] == h).cloned();
    assert_eq!(by_handle(&own.handle.0).unwrap()["name"], "own.txt");
    assert_eq!(by_handle(&folder.0).unwrap()["name"], "Shared stuff");
    let s = by_handle(&shared.handle.0).expect("the shared file decrypts in mega-rs");
    assert_eq!(s["name"], "big.bin");
    assert_eq!(s["size"], Value::from(content.len()));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.bin");
    run(
        &driver,
        &env,
        "bob@example.com",
        &["get", &shared.handle.0, out.to_str().unwrap()],
    )
    .await;
    assert_eq!(std::fs::read(&out).unwrap(), content);
    let out = dir.path().join("own.txt");
    run(
        &driver,
        &env,
        "bob@example.com",
        &["get", &own.handle.0, out.to_str().unwrap()],
    )
    .await;
    assert_eq!(std::fs::read(&out).unwrap(), b"bob's own");
}

/// POSIX metadata and another client (issue 20 §3): the crate `mega` rewrites a node's
/// attributes from its name and fingerprint only when it renames, dropping every other one
/// (labels and favourites too). The node then has no stored mode: a link becomes the plain
/// file holding its target, an executable gets the defaults. Nothing of the content is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_by_the_mega_crate_drops_modes_and_keeps_the_content() {
    use mega_mount::client::Target;
    let Some(driver) = driver() else { return };
    let env = Env::start().await;
    let c = env.account("rsposix@example.com").await;
    let root = c.root().unwrap().handle;
    let exe = Target {
        parent: &root,
        name: "tool.sh",
        replaces: None,
        mode: Some(0o100_755),
    };
    let tool = c
        .upload_to(exe, &mut &b"#!/bin/sh\n"[..], 10, 1_650_000_000, None)
        .await
        .unwrap();
    let link = Target {
        parent: &root,
        name: "latest",
        replaces: None,
        mode: None,
    };
    let link = c.symlink(link, b"tool.sh", 1_650_000_000).await.unwrap();
    assert!(link.is_symlink());
    for (h, name) in [
        (&tool.handle, "tool-renamed.sh"),
        (&link.handle, "latest-renamed"),
    ] {
        run(
            &driver,
            &env,
            "rsposix@example.com",
            &["rename", &h.0, name],
        )
        .await;
    }
    c.fetch().await.unwrap();
    let tool = c.resolve("/tool-renamed.sh").unwrap();
    assert_eq!(tool.mode, None, "the crate dropped the attribute");
    let link = c.resolve("/latest-renamed").unwrap();
    assert!(!link.is_symlink());
    assert_eq!(c.download_to_vec(&link.handle).await.unwrap(), b"tool.sh");
}
