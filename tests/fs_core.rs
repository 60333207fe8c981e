//! The filesystem core (`MegaFs`) against mega-testserver without a kernel mount: regressions
//! of races found on real mounts (a lookup racing a remote rename, a FLUSH in the middle of
//! writing, a rename during a commit), reproduced deterministically at the lowest tier, and the
//! transfer settings the mount reads with.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::mount::fs_core;
use common::{data, Env};

/// Regression (CI flake "not visible within 2 s: a remote rename"): a lookup of the new name
/// that lands between a remote rename's arrival and its invalidation must not make the mount
/// forget the old directory entry, or the kernel keeps showing the old name for the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_racing_a_remote_rename_keeps_the_old_entry_stale() {
    use mega_mount::client::TreeEvent;
    use mega_mount::fs::ROOT_INO;
    let env = Env::start().await;
    let other = env.account("race@example.com").await;
    let root = other.root().unwrap().handle;
    let f = other
        .upload(&root, "old.txt", &mut &b"v1"[..], 2, 0, None)
        .await
        .unwrap();
    let (fs, client) = fs_core(&env, "race@example.com").await;
    let ino = fs.lookup(ROOT_INO, "old.txt").unwrap().ino;
    let mut watcher = client.watch().unwrap();
    other.rename(&f.handle, "new.txt").await.unwrap();
    let changes = loop {
        match tokio::time::timeout(Duration::from_secs(10), watcher.events.recv()).await {
            Ok(Some(TreeEvent::Changed(c))) if !c.is_empty() => break c,
            Ok(Some(_)) => continue,
            other => panic!("no change event: {other:?}"),
        }
    };
    // The kernel looks up the new name before the watcher computes what is stale.
    assert_eq!(fs.lookup(ROOT_INO, "new.txt").unwrap().ino, ino);
    let stale = fs.stale(&changes);
    assert!(
        stale.entries.contains(&(ROOT_INO, "old.txt".to_string())),
        "old entry not invalidated: {stale:?}"
    );
    assert!(stale.inodes.contains(&ino));
}

/// Regression (CI flake: a file written with `cp` missing remotely): a FLUSH can arrive while
/// the file is still being written (a descriptor a forked child inherited is closed on exec).
/// That commit must not race the final one, nor make the later writes look saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_in_the_middle_of_writing_loses_nothing() {
    use mega_mount::fs::ROOT_INO;
    let env = Env::start().await;
    let other = env.account("flush@example.com").await;
    let (fs, _client) = fs_core(&env, "flush@example.com").await;
    let body = data(3_000_000, 9);
    let (_, fh) = fs.create(ROOT_INO, "x.bin").await.unwrap();
    fs.write(fh, 0, &body[..1_000_000]).await.unwrap();
    // A stray flush starts, and the writer carries on meanwhile, then closes.
    let stray = {
        let fs = fs.clone();
        tokio::spawn(async move { fs.flush(fh).await })
    };
    let rest = {
        let (fs, body) = (fs.clone(), body.clone());
        tokio::spawn(async move {
            for (i, part) in body[1_000_000..].chunks(131_072).enumerate() {
                fs.write(fh, 1_000_000 + i as u64 * 131_072, part)
                    .await
                    .unwrap();
            }
            fs.flush(fh).await
        })
    };
    stray.await.unwrap().unwrap();
    rest.await.unwrap().unwrap();
    fs.release(fh).await.unwrap();
    other.fetch().await.unwrap();
    let root = other.root().unwrap().handle;
    let named: Vec<_> = other
        .children(&root)
        .into_iter()
        .filter(|n| n.name == "x.bin")
        .collect();
    assert_eq!(named.len(), 1, "one version in the folder");
    assert_eq!(other.download_to_vec(&named[0].handle).await.unwrap(), body);
}

/// Regression (CI flake: after rsync, its temp file name was back and the final name gone): a
/// rename that arrives while a commit of the same file is uploading (a FLUSH from another
/// descriptor) must wait for it, or the new version is created under the old name and the
/// renamed node is trashed as "the previous version".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_during_a_commit_keeps_the_new_name() {
    use mega_mount::fs::ROOT_INO;
    let env = Env::start().await;
    let other = env.account("rn@example.com").await;
    let (fs, _client) = fs_core(&env, "rn@example.com").await;
    let body = data(4_000_000, 3);
    let (attr, fh) = fs.create(ROOT_INO, ".f.tmp").await.unwrap();
    fs.write(fh, 0, b"first").await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.write(fh, 0, &body).await.unwrap();
    let commit = {
        let fs = fs.clone();
        tokio::spawn(async move { fs.flush(fh).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    fs.rename(ROOT_INO, ".f.tmp", ROOT_INO, "f").await.unwrap();
    commit.await.unwrap().unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(fs.lookup(ROOT_INO, "f").unwrap().ino, attr.ino);
    other.fetch().await.unwrap();
    let root = other.root().unwrap().handle;
    let names: Vec<String> = other
        .children(&root)
        .into_iter()
        .map(|n| n.name.clone())
        .collect();
    assert_eq!(names, vec!["f".to_string()]);
    let f = other.resolve("/f").unwrap();
    assert_eq!(other.download_to_vec(&f.handle).await.unwrap(), body);
}

/// The mount's reads use the client's transfer settings (the configured retry budget), not
/// defaults of their own: with no retries a failing download range is an error, with retries
/// it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_use_the_configured_transfer_settings() {
    use mega_mount::api::RetryConfig;
    use mega_mount::fs::{FsConfig, MegaFs, ROOT_INO};
    use mega_mount::transfer::TransferConfig;
    let env = Env::start().await;
    let c = env.account("tc@example.com").await;
    let root = c.root().unwrap().handle;
    c.upload(&root, "f.bin", &mut &b"retried"[..], 7, 0, None)
        .await
        .unwrap();
    for (max_retries, ok) in [(0, false), (3, true)] {
        let mut client = env.login("tc@example.com").await;
        client.set_transfer_config(TransferConfig {
            retry: RetryConfig {
                max_retries,
                ..common::fast_retry()
            },
            ..Default::default()
        });
        let fs = std::sync::Arc::new(
            MegaFs::new(
                std::sync::Arc::new(client),
                FsConfig {
                    uid: 0,
                    gid: 0,
                    umask: 0o022,
                    read_only: false,
                    hard_delete: false,
                    cache_dir: env.dir.path().join(format!("tc-{max_retries}")),
                    cache_size: 1 << 20,
                    verify_full: false,
                    shares_dir: None,
                },
            )
            .unwrap(),
        );
        let ino = fs.lookup(ROOT_INO, "f.bin").unwrap().ino;
        let fh = fs.open(ino, false, false).await.unwrap();
        env.server.faults().update(|f| f.dl_http503 = 1);
        let r = fs.read(ino, fh, 0, 100).await;
        assert_eq!(r.is_ok(), ok, "max_retries {max_retries}: {r:?}");
        if ok {
            assert_eq!(r.unwrap(), b"retried");
        }
        assert_eq!(env.server.faults().get().dl_http503, 0, "the fault fired");
    }
}

/// Regression (writing a large file through the mount was quadratic): while a file has
/// unsaved writes, its mtime must not change from one write to the next, or the kernel drops
/// all of the file's cached pages whenever it re-reads the attributes (after every write).
/// It is the time of the first unsaved change until the commit sets the real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mtime_of_a_file_being_written_holds_still_until_it_is_saved() {
    use mega_mount::fs::ROOT_INO;
    let env = Env::start().await;
    env.account("still@example.com").await;
    let (fs, _client) = fs_core(&env, "still@example.com").await;
    let (a, fh) = fs.create(ROOT_INO, "w.bin").await.unwrap();
    fs.write(fh, 0, b"first").await.unwrap();
    let first = fs.getattr(a.ino).unwrap().mtime;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fs.write(fh, 5, b" second").await.unwrap();
    let during = fs.getattr(a.ino).unwrap();
    assert_eq!(during.mtime, first);
    assert_eq!(during.size, 12);
    fs.flush(fh).await.unwrap();
    assert!(
        fs.getattr(a.ino).unwrap().mtime > first,
        "the commit sets the mtime"
    );
    // The next burst of writes starts from its own first change.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fs.write(fh, 0, b"again").await.unwrap();
    assert!(fs.getattr(a.ino).unwrap().mtime > first);
    fs.release(fh).await.unwrap();
}

/// Regression (pjdfstest truncate::shrink_not_empty, under load): the kernel sends the release
/// of a closed file asynchronously, so a `truncate` by path can pick that file's writer while
/// its final commit runs. The change must not land on the released writer after its last
/// commit (it was never saved, and `stat` showed the old size): it goes to a new writer and is
/// committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_racing_the_release_of_a_writer_is_saved() {
    use mega_mount::fs::ROOT_INO;
    let env = Env::start().await;
    let other = env.account("tr@example.com").await;
    let (fs, _client) = fs_core(&env, "tr@example.com").await;
    let (attr, fh) = fs.create(ROOT_INO, "f").await.unwrap();
    fs.write(fh, 0, &data(12_345, 1)).await.unwrap();
    // The final commit takes a while: the truncate arrives in the middle of it.
    env.server.faults().update(|f| f.latency_ms = 300);
    let release = {
        let fs = fs.clone();
        tokio::spawn(async move { fs.release(fh).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let a = fs.setattr(attr.ino, None, Some(1), None).await.unwrap();
    release.await.unwrap().unwrap();
    env.server.faults().update(|f| f.latency_ms = 0);
    assert_eq!(a.size, 1);
    assert_eq!(fs.getattr(attr.ino).unwrap().size, 1);
    other.fetch().await.unwrap();
    let f = other.resolve("/f").unwrap();
    assert_eq!(f.size, 1, "the truncate reached MEGA");
}
