//! Interop with megajs (the npm MEGA client): it logs in to mega-testserver, lists, downloads
//! and MAC-verifies files our client uploaded, uploads files that our client then downloads
//! and MAC-verifies (including sizes where megajs computes its condensed MAC differently),
//! renames, moves, makes folders and exports a public link.
//!
//! Needs Node.js and npm; the test installs megajs itself (`npm ci` from tests/interop's lock
//! file) when it is not installed yet.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{Env, PASSWORD};
use mega_mount::api::ApiClient;
use mega_mount::client::download_public;
use mega_mount::transfer::TransferConfig;
use mega_mount::PublicFolder;
use mega_testserver::UserOptions;
use serde_json::Value;
use sha2::Digest;

/// Same generator as `content()` in megajs-driver.mjs.
fn interop_content(size: usize, seed: u32) -> Vec<u8> {
    (0..size as u32)
        .map(|i| (i.wrapping_mul(0x9E37_79B1).wrapping_add(seed) >> 24) as u8)
        .collect()
}

fn sha256_hex(d: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(d))
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs megajs from the lock file (`npm ci`) unless it is there already; once per test
/// process, however many tests ask at the same time.
fn install_megajs(dir: &std::path::Path) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if dir.join("node_modules/megajs").exists() {
            return;
        }
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .output()
            .expect("npm runs (install Node.js and npm)");
        assert!(
            out.status.success(),
            "npm ci failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    assert!(
        dir.join("node_modules/megajs").exists(),
        "megajs did not install"
    );
}

/// Runs the megajs driver with a timeout; returns its JSON output.
async fn run_driver(env: &Env, email: &str, mode: &str) -> Value {
    run_driver_with(env, email, mode, &[]).await
}

async fn run_driver_with(env: &Env, email: &str, mode: &str, extra: &[(&str, &str)]) -> Value {
    let dir = interop_dir();
    install_megajs(&dir);
    let child = tokio::process::Command::new("node")
        .arg("megajs-driver.mjs")
        .current_dir(&dir)
        .env("MEGA_API_URL", env.server.base_url())
        .env("MEGA_EMAIL", email)
        .env("MEGA_PASSWORD", PASSWORD)
        .env("DRIVER_MODE", mode)
        .envs(extra.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("megajs driver timed out")
        .expect("node runs");
    assert!(
        out.status.success(),
        "megajs driver failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("driver prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megajs_and_our_client_read_each_others_files() {
    let env = Env::start().await;
    let c = env.account("interop@example.com").await;
    let root = c.root().unwrap().handle;
    // Sizes megajs verifies the same way we do (not 0 or a chunk boundary, see §12.6).
    let ours = [1usize, 16, 131_073, 1_500_000];
    let mut expected = HashMap::new();
    for size in ours {
        let body = interop_content(size, 7);
        let name = format!("from-rust-{size}.bin");
        c.upload(
            &root,
            &name,
            &mut &body[..],
            size as u64,
            1_650_000_000,
            None,
        )
        .await
        .unwrap();
        expected.insert(name, sha256_hex(&body));
    }

    let out = run_driver(&env, "interop@example.com", "full").await;

    // megajs listed and MAC-verified our uploads.
    let listing: Vec<String> = out["listing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    for name in expected.keys() {
        assert!(
            listing.contains(name),
            "megajs does not list {name}: {listing:?}"
        );
        assert_eq!(
            out["downloads"][name].as_str(),
            Some(expected[name].as_str()),
            "{name}"
        );
    }
    assert_eq!(out["user"].as_str(), Some(c.session().user.as_str()));

    // Our client reads and MAC-verifies megajs' uploads, including the megajs MAC variant.
    c.fetch().await.unwrap();
    for size in [0usize, 131_072, 200_000, 1_048_581] {
        let node = c.resolve(&format!("/from-js-{size}.bin")).unwrap();
        assert_eq!(node.size, size as u64);
        let body = c.download_to_vec(&node.handle).await.unwrap();
        assert!(
            body == interop_content(size, (size % 251) as u32),
            "from-js-{size}.bin differs"
        );
    }
    let moved = c.resolve("/js-folder/from-js-16-renamed.bin").unwrap();
    assert_eq!(
        c.download_to_vec(&moved.handle).await.unwrap(),
        interop_content(16, 16)
    );
    let inner = c.resolve("/js-folder/inner.txt").unwrap();
    assert_eq!(c.download_to_vec(&inner.handle).await.unwrap(), b"inner");

    // megajs' public link works with our parser and downloader, and with megajs itself.
    let link = out["link"].as_str().unwrap();
    let anon = ApiClient::new(env.api_config()).unwrap();
    let mut data = Vec::new();
    let info = download_public(&anon, link, &mut data, &TransferConfig::default(), None)
        .await
        .unwrap();
    assert_eq!(info.name, "from-js-200000.bin");
    assert_eq!(data, interop_content(200_000, 200_000 % 251));
    assert_eq!(out["link_name"].as_str(), Some("from-js-200000.bin"));
    assert_eq!(
        out["link_sha256"].as_str(),
        Some(sha256_hex(&data).as_str())
    );

    // megajs' folder link opens in our client, without logging in.
    let folder = PublicFolder::open(&anon, out["folder_link"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(folder.root().name, "js-shared");
    let n = folder.resolve("in-share.txt").unwrap().handle.clone();
    let mut got = Vec::new();
    folder
        .download(&anon, &n, &mut got, &TransferConfig::default(), None)
        .await
        .unwrap();
    assert_eq!(got, b"shared!!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megajs_opens_our_folder_links() {
    let env = Env::start().await;
    let c = env.account("folder-interop@example.com").await;
    let root = c.root().unwrap().handle;
    let top = c.mkdir(&root, "exported").await.unwrap();
    let inner = c.mkdir(&top.handle, "inner").await.unwrap();
    let a = interop_content(300_000, 3);
    c.upload(&top.handle, "a.bin", &mut &a[..], a.len() as u64, 0, None)
        .await
        .unwrap();
    let link = c.export(&top.handle).await.unwrap();
    // Uploaded after the export: its key reaches the share through `cr` on `p`.
    c.upload(&inner.handle, "b.txt", &mut &b"bee"[..], 3, 0, None)
        .await
        .unwrap();
    let out = run_driver_with(&env, "", "open-folder-link", &[("MEGA_FOLDER_LINK", &link)]).await;
    assert_eq!(out["name"].as_str(), Some("exported"));
    assert_eq!(
        out["files"]["a.bin"].as_str(),
        Some(sha256_hex(&a).as_str())
    );
    assert_eq!(
        out["files"]["inner/b.txt"].as_str(),
        Some(sha256_hex(b"bee").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megajs_logs_in_to_v1_accounts() {
    let env = Env::start().await;
    env.user(
        "v1-interop@example.com",
        UserOptions {
            v1: true,
            ..Default::default()
        },
    )
    .await;
    let c = env.login("v1-interop@example.com").await;
    let root = c.root().unwrap().handle;
    c.mkdir(&root, "made-by-rust").await.unwrap();
    let out = run_driver(&env, "v1-interop@example.com", "list").await;
    assert_eq!(out["listing"][0]["name"].as_str(), Some("made-by-rust"));
    assert_eq!(out["listing"][0]["directory"].as_bool(), Some(true));
}

/// File attributes written by megajs (an upload with `thumbnailImage`/`previewImage`, and
/// `uploadAttribute` on a file we uploaded) are read back by our client, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_reads_the_thumbnails_megajs_writes() {
    use image::ImageFormat;
    use mega_mount::transfer::fileattr::{PREVIEW, THUMBNAIL};
    let env = Env::start().await;
    let c = env.account("pics-interop@example.com").await;
    let root = c.root().unwrap().handle;
    // No pictures of our own for this one: megajs adds the thumbnail.
    c.set_graphics(None);
    let body = interop_content(1000, 1);
    c.upload(&root, "from-rust-plain.jpg", &mut &body[..], 1000, 0, None)
        .await
        .unwrap();
    let thumb = common::picture(200, 200, ImageFormat::Jpeg);
    let preview = common::picture(640, 400, ImageFormat::Jpeg);
    let dir = tempfile::tempdir().unwrap();
    let (tp, pp) = (dir.path().join("t.jpg"), dir.path().join("p.jpg"));
    std::fs::write(&tp, &thumb).unwrap();
    std::fs::write(&pp, &preview).unwrap();
    let (tp, pp) = (tp.to_string_lossy(), pp.to_string_lossy());
    run_driver_with(
        &env,
        "pics-interop@example.com",
        "pictures",
        &[("THUMB_PATH", &tp), ("PREVIEW_PATH", &pp)],
    )
    .await;
    c.fetch().await.unwrap();
    let js = c.resolve("/js-pic.jpg").unwrap();
    assert_eq!(
        c.file_attribute(&js.handle, THUMBNAIL).await.unwrap(),
        Some(thumb.clone())
    );
    assert_eq!(
        c.file_attribute(&js.handle, PREVIEW).await.unwrap(),
        Some(preview)
    );
    assert_eq!(
        c.download_to_vec(&js.handle).await.unwrap(),
        interop_content(5000, 9)
    );
    // `pfa` on our file: the new list reached our tree.
    let plain = c.resolve("/from-rust-plain.jpg").unwrap();
    assert_eq!(
        c.file_attribute(&plain.handle, THUMBNAIL).await.unwrap(),
        Some(thumb)
    );
    assert_eq!(
        c.file_attribute(&plain.handle, PREVIEW).await.unwrap(),
        None
    );
}

/// POSIX metadata and another client (issue 20 §3): megajs keeps every attribute when it
/// renames (it re-encrypts the whole object it decrypted), so an executable stays executable
/// and a symbolic link stays a link; to megajs the link is a small file holding its target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_by_megajs_keeps_modes_and_links() {
    use mega_mount::client::Target;
    let env = Env::start().await;
    let c = env.account("jsposix@example.com").await;
    let root = c.root().unwrap().handle;
    let target = |name: &'static str, mode| Target {
        parent: &root,
        name,
        replaces: None,
        mode,
    };
    c.upload_to(
        target("tool.sh", Some(0o100_755)),
        &mut &b"#!/bin/sh\n"[..],
        10,
        1_650_000_000,
        None,
    )
    .await
    .unwrap();
    c.symlink(target("latest", None), b"tool.sh", 1_650_000_000)
        .await
        .unwrap();
    let out = run_driver_with(
        &env,
        "jsposix@example.com",
        "rename",
        &[("RENAME_FROM", "tool.sh,latest")],
    )
    .await;
    let listed = |name: &str| {
        out["listing"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(listed("latest")["size"], 7, "a file holding the target");
    c.fetch().await.unwrap();
    let tool = c.resolve("/tool.sh-renamed").unwrap();
    assert_eq!(tool.mode, Some(0o100_755));
    let link = c.resolve("/latest-renamed").unwrap();
    assert!(link.is_symlink());
    assert_eq!(c.read_link(&link.handle).await.unwrap(), b"tool.sh");
}
