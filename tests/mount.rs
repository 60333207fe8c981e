//! Real FUSE mounts of `mega-mount` against mega-testserver, with real tools: listing, reading
//! (whole files and random offsets), writing (create, cp, append, overwrite, truncate),
//! mkdir/rmdir, rm to the Rubbish Bin, mv within and across folders and over files, touch, df,
//! a corrupted download giving EIO, rsync and git, the mount.fuse3 calling convention and fstab,
//! signals, and many processes at once. The harness is in `common/mount.rs`; the behaviour
//! suite shared with the in-process tier is `behaviour.rs`, the core-level regressions
//! `fs_core.rs`.
//!
//! Every mount has its own temporary mountpoint and is unmounted when the guard drops; every
//! file operation on the mount runs with a timeout, so a bug fails a test instead of hanging.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::mount::{daemon, eventually_on_mount, is_mounted, mtime, op, Holder, Mount, BIN};
use common::{data, Env, PASSWORD};
use mega_testserver::UserOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_and_namespace_operations() {
    let env = Env::start().await;
    let c = env.account("m@example.com").await;
    let root = c.root().unwrap().handle;
    let big = data(1_500_000, 1);
    c.upload(
        &root,
        "big.bin",
        &mut &big[..],
        big.len() as u64,
        1_600_000_000,
        None,
    )
    .await
    .unwrap();
    let docs = c.mkdir(&root, "docs").await.unwrap();
    c.upload(
        &docs.handle,
        "a.txt",
        &mut &b"alpha"[..],
        5,
        1_600_000_001,
        None,
    )
    .await
    .unwrap();
    let m = Mount::start(&env, "m@example.com", &[], true);

    // Listing, sizes and mtimes (from the fingerprint).
    let (p, d) = (m.path(""), m.path("docs/a.txt"));
    let names = op("readdir", move || {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    })
    .await;
    assert_eq!(names, vec!["big.bin", "docs"]);
    let (bp, dp) = (m.path("big.bin"), d.clone());
    let (size, mt, amt) = op("stat", move || {
        (
            std::fs::metadata(&bp).unwrap().len(),
            mtime(&bp),
            mtime(&dp),
        )
    })
    .await;
    assert_eq!((size, mt, amt), (1_500_000, 1_600_000_000, 1_600_000_001));

    // Whole-file and random-offset reads.
    let bp = m.path("big.bin");
    let whole = op("read", move || std::fs::read(bp).unwrap()).await;
    assert!(whole == big, "content differs");
    let bp = m.path("big.bin");
    let parts = op("pread", move || {
        let f = std::fs::File::open(bp).unwrap();
        [
            (0u64, 10usize),
            (131_060, 40),
            (1_499_990, 10),
            (786_000, 70_000),
        ]
        .iter()
        .map(|&(off, len)| {
            let mut b = vec![0u8; len];
            f.read_exact_at(&mut b, off).unwrap();
            (off, b)
        })
        .collect::<Vec<_>>()
    })
    .await;
    for (off, b) in parts {
        assert_eq!(
            b,
            big[off as usize..off as usize + b.len()],
            "read at {off}"
        );
    }

    // cp into the mount, then the remote side has it.
    let src = env.dir.path().join("local.bin");
    let body = data(3_000_000, 2);
    std::fs::write(&src, &body).unwrap();
    let dst = m.path("docs/copied.bin");
    op("cp", move || std::fs::copy(&src, &dst).unwrap()).await;
    c.fetch().await.unwrap();
    let n = c.resolve("/docs/copied.bin").unwrap();
    assert_eq!(c.download_to_vec(&n.handle).await.unwrap(), body);

    // > redirection, >> append, overwrite, truncate.
    let f = m.path("docs/notes.txt");
    let f2 = f.clone();
    op("write/append", move || {
        std::fs::write(&f2, b"one\n").unwrap();
        let mut h = std::fs::OpenOptions::new().append(true).open(&f2).unwrap();
        std::io::Write::write_all(&mut h, b"two\n").unwrap();
    })
    .await;
    let f2 = f.clone();
    assert_eq!(
        op("read back", move || std::fs::read(f2).unwrap()).await,
        b"one\ntwo\n"
    );
    let f2 = f.clone();
    op("overwrite", move || {
        std::fs::write(&f2, b"replaced").unwrap()
    })
    .await;
    let f2 = f.clone();
    assert_eq!(
        op("read", move || std::fs::read(f2).unwrap()).await,
        b"replaced"
    );
    let f2 = f.clone();
    op("truncate", move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f2)
            .unwrap()
            .set_len(3)
            .unwrap()
    })
    .await;
    let f2 = f.clone();
    assert_eq!(op("read", move || std::fs::read(f2).unwrap()).await, b"rep");
    // Random-offset write into an existing file.
    let f2 = f.clone();
    op("pwrite", move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f2)
            .unwrap()
            .write_all_at(b"X", 1)
            .unwrap()
    })
    .await;
    let f2 = f.clone();
    assert_eq!(op("read", move || std::fs::read(f2).unwrap()).await, b"rXp");

    // touch: set the mtime; the remote fingerprint keeps it.
    let f2 = f.clone();
    op("touch", move || {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
        std::fs::File::options()
            .write(true)
            .open(&f2)
            .unwrap()
            .set_modified(t)
            .unwrap();
    })
    .await;
    let f2 = f.clone();
    assert_eq!(op("stat", move || mtime(&f2)).await, 1_234_567_890);
    c.fetch().await.unwrap();
    assert_eq!(c.resolve("/docs/notes.txt").unwrap().mtime, 1_234_567_890);

    // mkdir -p, rmdir (refused when not empty), mv within/across/over, rm to the Rubbish Bin.
    let (a, b) = (m.path("x/y/z"), m.path("x"));
    op("mkdir -p", move || std::fs::create_dir_all(a).unwrap()).await;
    let b2 = b.clone();
    let e = op("rmdir non-empty", move || {
        std::fs::remove_dir(b2).unwrap_err()
    })
    .await;
    assert_eq!(e.raw_os_error(), Some(39), "ENOTEMPTY");
    let (from, to) = (m.path("docs/a.txt"), m.path("docs/b.txt"));
    op("rename", move || std::fs::rename(from, to).unwrap()).await;
    let (from, to) = (m.path("docs/b.txt"), m.path("x/y/b.txt"));
    op("move", move || std::fs::rename(from, to).unwrap()).await;
    let (from, to) = (m.path("docs/notes.txt"), m.path("x/y/b.txt"));
    op("move over", move || std::fs::rename(from, to).unwrap()).await;
    let p = m.path("x/y/b.txt");
    assert_eq!(op("read", move || std::fs::read(p).unwrap()).await, b"rXp");
    let p = m.path("x/y/z");
    op("rmdir", move || std::fs::remove_dir(p).unwrap()).await;
    let p = m.path("big.bin");
    op("rm", move || std::fs::remove_file(p).unwrap()).await;
    c.fetch().await.unwrap();
    let rubbish = c.rubbish().unwrap().handle;
    let in_rubbish: Vec<String> = c
        .children(&rubbish)
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(
        in_rubbish.contains(&"big.bin".to_string()),
        "{in_rubbish:?}"
    );
    assert!(c.resolve("/x/y/b.txt").is_ok() && c.resolve("/docs/a.txt").is_err());

    // df shows the account quota.
    let p = m.path("");
    let out = op("df", move || {
        Command::new("df")
            .args(["-B1", "--output=size"])
            .arg(p)
            .output()
            .unwrap()
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    let size: u64 = text.lines().nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(size, mega_testserver::DEFAULT_QUOTA as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_content_reads_fail_with_eio() {
    let env = Env::start().await;
    let c = env.account("eio@example.com").await;
    let root = c.root().unwrap().handle;
    let body = data(700_000, 3);
    c.upload(&root, "f.bin", &mut &body[..], body.len() as u64, 0, None)
        .await
        .unwrap();
    let m = Mount::start(&env, "eio@example.com", &[], true);
    env.server.faults().update(|f| f.corrupt_downloads = true);
    let p = m.path("f.bin");
    let e = op("read corrupt", move || std::fs::read(p).unwrap_err()).await;
    assert_eq!(e.raw_os_error(), Some(5), "EIO, got {e}");
    // And it stays failed: no bad block is served from the cache afterwards.
    env.server.faults().update(|f| f.corrupt_downloads = false);
    let p = m.path("f.bin");
    let e = op("read again", move || std::fs::read(p).unwrap_err()).await;
    assert_eq!(e.raw_os_error(), Some(5));
}

/// `verify=full`: no byte of a file reaches a reader before the whole file's MAC verified.
/// A sound file bigger than the block cache reads back whole; a corrupted one fails its very
/// first read. By default (streaming) that first read is served, and the mismatch fails the
/// reads after it: the documented difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_serves_nothing_before_the_whole_file_verified() {
    use std::io::Read;
    let env = Env::start().await;
    let c = env.account("vf@example.com").await;
    let root = c.root().unwrap().handle;
    let body = data(6_000_000, 5);
    for name in ["good.bin", "bad.bin"] {
        c.upload(&root, name, &mut &body[..], body.len() as u64, 0, None)
            .await
            .unwrap();
    }
    // How many bytes a read of the first 4 KiB got (not the bytes: they would fill a
    // failure message).
    let first_4k = |p: PathBuf| {
        move || -> std::io::Result<usize> {
            let mut f = std::fs::File::open(p)?;
            let mut b = vec![0u8; 4096];
            f.read_exact(&mut b)?;
            Ok(b.len())
        }
    };
    {
        let m = Mount::start(
            &env,
            "vf@example.com",
            &["-o", "verify=full,cache_size=1M"],
            true,
        );
        let p = m.path("good.bin");
        let got = op("read good", move || std::fs::read(p).unwrap()).await;
        assert!(got == body, "a verified file reads back whole");
        env.server.faults().update(|f| f.corrupt_downloads = true);
        let e = op("first 4 KiB, verify=full", first_4k(m.path("bad.bin")))
            .await
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(5), "EIO before any byte, got {e}");
        env.server.faults().update(|f| f.corrupt_downloads = false);
    }
    let m = Mount::start(&env, "vf@example.com", &[], true);
    env.server.faults().update(|f| f.corrupt_downloads = true);
    let first = op("first 4 KiB, streaming", first_4k(m.path("bad.bin"))).await;
    assert!(
        first.is_ok(),
        "streaming serves chunks before the MAC is known"
    );
    let p = m.path("bad.bin");
    let e = op("whole file, streaming", move || {
        std::fs::read(p).unwrap_err()
    })
    .await;
    assert_eq!(e.raw_os_error(), Some(5));
    env.server.faults().update(|f| f.corrupt_downloads = false);
}

/// Drops the kernel's cached pages of a file on the mount, so that the next read asks the
/// daemon.
fn drop_pages(p: &std::path::Path) {
    let f = std::fs::File::open(p).unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

/// Trust regression (a tampered re-fetch was served): with a block cache smaller than the
/// file, a file copied in and read back (verified) is changed on the server; reading it again
/// fetches its chunks again, and they must match the MACs recorded when it verified: EIO,
/// never the changed bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_on_the_server_after_it_verified_reads_as_eio() {
    let env = Env::start().await;
    env.account("tamper@example.com").await;
    let m = Mount::start(&env, "tamper@example.com", &["-o", "cache_size=1M"], true);
    let body = data(24 << 20, 11);
    let (p, b) = (m.path("big.bin"), body.clone());
    op("cp in", move || std::fs::write(p, b).unwrap()).await;
    let p = m.path("big.bin");
    let back = op("read back", move || {
        drop_pages(&p);
        std::fs::read(&p).unwrap()
    })
    .await;
    assert!(back == body, "read back whole");
    env.server.faults().update(|f| f.corrupt_after = 7 << 20);
    let p = m.path("big.bin");
    let again = op("read again", move || {
        drop_pages(&p);
        std::fs::read(&p)
    })
    .await;
    let e = again.map(|b| b == body).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "EIO, got {e}");
    assert!(
        env.server.faults().get().corrupt_downloads,
        "tampered bytes were served"
    );
    env.server
        .faults()
        .set(mega_testserver::FaultConfig::default());
}

/// Trust: `touch` of a file that has no fingerprint (uploaded by a client that writes none)
/// computes its checksum from the verified content in memory: no plaintext in the daemon's
/// temporary folder or cache, during or after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_of_a_file_without_a_fingerprint_keeps_no_plaintext_on_disk() {
    use mega_mount::crypto::{attr, b64};
    use mega_testserver::Queries;
    let env = Env::start().await;
    let c = env.account("touchp@example.com").await;
    let root = c.root().unwrap().handle;
    let marker = b"TOUCH-PLAINTEXT-MARKER-91c2";
    let body: Vec<u8> = marker.iter().copied().cycle().take(12 << 20).collect();
    let n = c
        .upload(
            &root,
            "nofp.txt",
            &mut &body[..],
            body.len() as u64,
            0,
            None,
        )
        .await
        .unwrap();
    // Its attributes as a client that writes no fingerprint leaves them: the name only.
    let key = n.key.as_ref().unwrap().attr_key();
    let mut attrs = serde_json::Map::new();
    attrs.insert("n".into(), serde_json::json!("nofp.txt"));
    let a = b64::encode(&attr::encrypt(&key, &attrs));
    env.server
        .store()
        .lock()
        .set_attrs(&n.handle.0, &a)
        .unwrap();
    let m = Mount::start(&env, "touchp@example.com", &[], true);
    env.server.faults().update(|f| f.bandwidth_bps = 8 << 20);
    let p = m.path("nofp.txt");
    let touch = tokio::spawn(op("touch", move || {
        let s = Command::new("touch")
            .args(["-d", "@1500000000"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(s.success());
    }));
    let mut looks = 0;
    while !touch.is_finished() {
        let h = m.home.clone();
        let found = tokio::task::spawn_blocking(move || common::file_holding(&h, marker))
            .await
            .unwrap();
        assert_eq!(found, None, "plaintext on disk while touch runs");
        looks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    touch.await.unwrap();
    env.server.faults().update(|f| f.bandwidth_bps = 0);
    assert!(looks >= 3, "looked while it ran ({looks} times)");
    assert_eq!(common::file_holding(&m.home, marker), None);
    assert_eq!(mtime(&m.path("nofp.txt")), 1_500_000_000);
    c.fetch().await.unwrap();
    let f = c.resolve("/nofp.txt").unwrap();
    assert_eq!(f.mtime, 1_500_000_000, "the fingerprint carries the mtime");
    assert!(c.download_to_vec(&f.handle).await.unwrap() == body);
}

/// Listings are stable: a folder listed page by page while another client renames files in
/// it (a storm of renames) returns every file that was not renamed exactly once, and no name
/// twice — offsets index the listing the directory handle took, not a view rebuilt on every
/// change. (On a view rebuilt per change, renames shift the offsets: entries repeat or go
/// missing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_is_stable_while_the_folder_changes() {
    let env = Env::start().await;
    let c = env.account("storm@example.com").await;
    let root = c.root().unwrap().handle;
    let dir = c.mkdir(&root, "big").await.unwrap().handle;
    let mut files = Vec::new();
    for i in 0..1200 {
        let name = format!("f{i:04}.txt");
        let n = c
            .upload(&dir, &name, &mut &b"x"[..], 1, 0, None)
            .await
            .unwrap();
        files.push((name, n.handle));
    }
    let m = Mount::start(&env, "storm@example.com", &[], true);
    let p = m.path("big");
    // Warm: the mount has seen the folder.
    let p2 = p.clone();
    assert_eq!(
        op("list", move || std::fs::read_dir(p2).unwrap().count()).await,
        1200
    );
    // Renames from another client while the listing is read slowly, page by page. Every
    // renamed name sorts first, so a view rebuilt mid-listing shifts every offset.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = {
        let (c, stop) = (std::sync::Arc::new(c), stop.clone());
        let targets: Vec<_> = files.iter().skip(600).step_by(3).cloned().collect();
        tokio::spawn(async move {
            let mut renamed = Vec::new();
            for (i, (_, h)) in targets.iter().enumerate() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                c.rename(h, &format!("a-renamed-{i:04}.txt")).await.unwrap();
                renamed.push(i);
            }
            targets
        })
    };
    let listed = op("list while renamed", move || {
        // Small reads (about 10 entries per getdents), slowly: the listing spans the storm.
        let dir = std::fs::File::open(p).unwrap();
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 512];
        let mut raw = rustix::fs::RawDir::new(&dir, &mut buf);
        let mut names = Vec::new();
        while let Some(e) = raw.next() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
            if names.len() % 10 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        names
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let targets = storm.await.unwrap();
    let mut seen = std::collections::HashMap::new();
    for n in &listed {
        *seen.entry(n.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "listed twice: {twice:?}");
    let moved: std::collections::HashSet<&String> = targets.iter().map(|(n, _)| n).collect();
    let missing: Vec<_> = files
        .iter()
        .filter(|(n, _)| !moved.contains(n) && !seen.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} files never renamed were not listed",
        missing.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_fuse3_convention_background_and_options() {
    let env = Env::start().await;
    env.user("opt@example.com", UserOptions::default()).await;
    let c = env.login("opt@example.com").await;
    let root = c.root().unwrap().handle;
    c.upload(&root, "r.txt", &mut &b"read me"[..], 7, 0, None)
        .await
        .unwrap();
    // How mount(8) runs it from an fstab line: SOURCE MOUNTPOINT -o options; in the background.
    let m = Mount::start(
        &env,
        "opt@example.com",
        &["mega", "-o", "ro,_netdev,uid=1234,gid=4321,umask=077"],
        false,
    );
    let p = m.path("r.txt");
    let meta = op("stat", move || std::fs::metadata(p).unwrap()).await;
    assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let p = m.path("new.txt");
    let e = op("write on ro", move || std::fs::write(p, b"x").unwrap_err()).await;
    assert_eq!(e.raw_os_error(), Some(30), "EROFS, got {e}");
    let p = m.path("r.txt");
    assert_eq!(
        op("read", move || std::fs::read(p).unwrap()).await,
        b"read me"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_changes_show_up_on_the_mount() {
    let env = Env::start().await;
    let c = env.account("rc@example.com").await;
    let root = c.root().unwrap().handle;
    let old = c
        .upload(&root, "old.txt", &mut &b"v1"[..], 2, 0, None)
        .await
        .unwrap();
    let m = Mount::start(&env, "rc@example.com", &[], true);
    // Let the kernel cache the listing and the file first.
    let (p, f) = (m.path(""), m.path("old.txt"));
    op("warm", move || {
        let _ = std::fs::read_dir(p).unwrap().count();
        std::fs::read(f).unwrap()
    })
    .await;

    // Another session creates, renames and deletes; the mount shows it within 2 seconds.
    let start = std::time::Instant::now();
    c.upload(&root, "new.txt", &mut &b"fresh"[..], 5, 0, None)
        .await
        .unwrap();
    let p = m.path("new.txt");
    eventually_on_mount(2, "a file created remotely", move || {
        std::fs::read(&p).ok().as_deref() == Some(&b"fresh"[..])
    })
    .await;
    c.rename(&old.handle, "renamed.txt").await.unwrap();
    let (a, b) = (m.path("renamed.txt"), m.path("old.txt"));
    eventually_on_mount(2, "a remote rename", move || a.exists() && !b.exists()).await;
    let sub = c.mkdir(&root, "sub").await.unwrap();
    c.move_to(&old.handle, &sub.handle).await.unwrap();
    let p = m.path("sub/renamed.txt");
    eventually_on_mount(2, "a remote move", move || {
        std::fs::read(&p).ok().as_deref() == Some(&b"v1"[..])
    })
    .await;
    c.delete(&sub.handle).await.unwrap();
    let p = m.path("sub");
    eventually_on_mount(2, "a remote delete", move || !p.exists()).await;
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsync_twice_and_git_commit() {
    let env = Env::start().await;
    env.account("tools@example.com").await;
    let m = Mount::start(&env, "tools@example.com", &[], true);
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 1..=3u8 {
        std::fs::write(src.join(format!("f{i}")), data(i as usize * 70_000, i)).unwrap();
    }
    std::fs::write(src.join("sub/x.txt"), b"hi").unwrap();
    // Modes and a symbolic link come across too, and the second run finds them equal.
    std::fs::set_permissions(src.join("f3"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("f2", src.join("link")).unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
    std::fs::File::options()
        .write(true)
        .open(src.join("f1"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let rsync = |src: PathBuf, dst: PathBuf| {
        move || {
            let out = Command::new("rsync")
                .arg("-a")
                .arg("--stats")
                .arg(format!("{}/", src.display()))
                .arg(format!("{}/", dst.display()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "rsync failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let first = op("rsync 1", rsync(src.clone(), m.path("dst"))).await;
    assert!(
        first.contains("Number of regular files transferred: 4"),
        "{first}"
    );
    let second = op("rsync 2", rsync(src.clone(), m.path("dst"))).await;
    assert!(
        second.contains("Number of regular files transferred: 0")
            && second.contains("Number of created files: 0"),
        "second run transferred: {second}"
    );
    let (l, f3) = (m.path("dst/link"), m.path("dst/f3"));
    op("the link and the mode", move || {
        assert_eq!(std::fs::read_link(&l).unwrap(), PathBuf::from("f2"));
        let mode = std::fs::metadata(&f3).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    })
    .await;
    let (a, b) = (src.clone(), m.path("dst"));
    let same = op("diff", move || {
        Command::new("diff")
            .arg("-r")
            .arg(a)
            .arg(b)
            .status()
            .unwrap()
            .success()
    })
    .await;
    assert!(same, "rsync copy differs");
    let p = m.path("dst/f1");
    assert_eq!(op("stat", move || mtime(&p)).await, 1_577_836_800);

    let repo = m.path("repo");
    let r2 = repo.clone();
    let log = op("git", move || {
        std::fs::create_dir(&r2).unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args([
                    "-c",
                    "user.email=t@example.com",
                    "-c",
                    "user.name=Test",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .current_dir(&r2)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        git(&["init", "-q", "."]);
        std::fs::write(r2.join("a.txt"), b"content\n").unwrap();
        // An executable and a link: git finds the mount keeps both (core.filemode and
        // core.symlinks), and the tree it commits has them.
        std::fs::write(r2.join("run.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(r2.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("a.txt", r2.join("a-link")).unwrap();
        git(&["add", "a.txt", "run.sh", "a-link"]);
        git(&["commit", "-qm", "first"]);
        let tree = git(&["ls-tree", "HEAD"]);
        assert!(
            tree.contains("100755 blob") && tree.contains("120000 blob"),
            "{tree}"
        );
        std::fs::write(r2.join("a.txt"), b"changed\n").unwrap();
        git(&["commit", "-qam", "second"]);
        assert_eq!(git(&["status", "--porcelain"]), "");
        git(&["log", "--oneline"])
    })
    .await;
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains("first") && log.contains("second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_past_the_quota_is_edquot_and_keeps_the_data() {
    let env = Env::start().await;
    env.user(
        "q@example.com",
        UserOptions {
            quota: 100_000,
            ..Default::default()
        },
    )
    .await;
    let m = Mount::start(&env, "q@example.com", &[], true);
    let p = m.path("big.bin");
    let body = data(200_000, 9);
    let b2 = body.clone();
    let e = op("write over quota", move || {
        let mut f = std::fs::File::create(&p).unwrap();
        std::io::Write::write_all(&mut f, &b2).unwrap();
        f.sync_all().unwrap_err()
    })
    .await;
    assert_eq!(e.raw_os_error(), Some(122), "EDQUOT, got {e}");
    // The written bytes were not thrown away: they wait, encrypted, in a staging file
    // marked as unsaved (so the next start uploads it).
    let staging = staging_files(&m.home.join("cache/mega-mount/staging"));
    assert_eq!(staging.len(), 1, "{staging:?}");
    let raw = std::fs::read(&staging[0]).unwrap();
    assert_eq!(raw.len(), 4096 + body.len(), "a header, then the content");
    assert!(
        !raw.windows(64).any(|w| w == &body[..64]),
        "the staging file holds plaintext"
    );
    assert!(mega_mount::transfer::staged::StagedFile::is_unsaved(
        &staging[0]
    ));
    let all = std::fs::read_dir(m.home.join("cache/mega-mount/staging")).unwrap();
    let beside = all
        .map(|e| e.unwrap().path())
        .filter(|p| !mega_mount::transfer::StagedFile::is_blank(p))
        .count();
    assert_eq!(beside, 1, "one file per staging file (spares aside)");
    let c = env.login("q@example.com").await;
    let (staged, origin) =
        mega_mount::transfer::staged::StagedFile::open(&staging[0], &c.session().master_key)
            .unwrap();
    assert_eq!(origin, "/big.bin");
    assert_eq!(staged.read_at(0, body.len()).unwrap(), body);
}

/// An fstab line mounted with `mount -T FSTAB MOUNTPOINT`: mount(8) -> mount.fuse3 ->
/// `mega-mount mega MOUNTPOINT -o ...` in background mode, credentials from `config=`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fstab_line_mounts_with_mount_t() {
    let env = Env::start().await;
    env.account("fstab@example.com").await;
    let dir = env.dir.path().canonicalize().unwrap();
    let mp = dir.join("fstab-mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let conf = dir.join("mega.toml");
    std::fs::write(
        &conf,
        format!(
            "email = \"fstab@example.com\"\npassword = \"{PASSWORD}\"\napi_url = \"{}\"\nsession_file = \"{}\"\n",
            env.server.base_url(),
            dir.join("session.json").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fstab = dir.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{BIN}#mega {} fuse rw,_netdev,noauto,config={},cache_dir={} 0 0\n",
            mp.display(),
            conf.display(),
            dir.join("fstab-cache").display()
        ),
    )
    .unwrap();
    let guard = Mount {
        dir: mp.clone(),
        home: dir.clone(),
        child: None,
    };
    let (f, m) = (fstab.clone(), mp.clone());
    let out = op("mount -T", move || {
        Command::new("mount")
            .arg("-T")
            .arg(f)
            .arg(m)
            .output()
            .unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "mount -T failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&mp));
    let p = mp.join("hello.txt");
    op("write", move || std::fs::write(p, b"from fstab").unwrap()).await;
    let c = env.login("fstab@example.com").await;
    let n = c.resolve("/hello.txt").unwrap();
    assert_eq!(c.download_to_vec(&n.handle).await.unwrap(), b"from fstab");
    let m = mp.clone();
    let out = op("umount", move || {
        Command::new("umount").arg(m).output().unwrap()
    })
    .await;
    assert!(
        out.status.success(),
        "umount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mounted(&mp));
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dd_tail_mmap_and_concurrent_readers() {
    let env = Env::start().await;
    let c = env.account("rd@example.com").await;
    let root = c.root().unwrap().handle;
    let body = data(5_000_000, 4);
    c.upload(&root, "f.bin", &mut &body[..], body.len() as u64, 0, None)
        .await
        .unwrap();
    let m = Mount::start(&env, "rd@example.com", &[], true);

    // dd skip= (random offset), tail -c.
    let p = m.path("f.bin");
    let out = op("dd", move || {
        Command::new("dd")
            .arg(format!("if={}", p.display()))
            .args(["bs=4096", "skip=700", "count=3", "status=none"])
            .output()
            .unwrap()
    })
    .await;
    assert_eq!(out.stdout, body[700 * 4096..703 * 4096]);
    let p = m.path("f.bin");
    let out = op("tail -c", move || {
        Command::new("tail")
            .args(["-c", "1000"])
            .arg(p)
            .output()
            .unwrap()
    })
    .await;
    assert_eq!(out.stdout, body[body.len() - 1000..]);

    // mmap read (through the page cache): python's mmap module.
    let p = m.path("f.bin");
    let out = op("mmap", move || {
        Command::new("python3")
            .args(["-c", "import mmap,sys,hashlib;f=open(sys.argv[1],'rb');m=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ);print(hashlib.sha256(m[:]).hexdigest())"])
            .arg(p)
            .output()
            .unwrap()
    }).await;
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        want,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Several processes reading the same file at once, at different places.
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let p = m.path("f.bin");
            let expect = body[i * 1_000_000..i * 1_000_000 + 500_000].to_vec();
            tokio::spawn(op("concurrent read", move || {
                let f = std::fs::File::open(p).unwrap();
                let mut b = vec![0u8; 500_000];
                f.read_exact_at(&mut b, (i * 1_000_000) as u64).unwrap();
                assert!(b == expect, "reader {i} got wrong bytes");
            }))
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }

    // sha256sum, find and du, as users run them.
    let (p, dir) = (m.path("f.bin"), m.path(""));
    let (sum, found, du) = op("sha256sum, find, du", move || {
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
            let out = Command::new(cmd).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/small.txt"), b"0123456789").unwrap();
        (
            run("sha256sum", &[p.as_os_str()]),
            run("find", &[dir.as_os_str(), "-type".as_ref(), "f".as_ref()]),
            run("du", &["-sk".as_ref(), dir.as_os_str()]),
        )
    })
    .await;
    assert!(sum.starts_with(&want), "{sum}");
    let mut found: Vec<String> = found
        .lines()
        .map(|l| {
            l.trim_start_matches(&*m.path("").to_string_lossy())
                .to_string()
        })
        .collect();
    found.sort();
    assert_eq!(found, ["f.bin", "sub/small.txt"]);
    let kib: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        (4_883..=4_900).contains(&kib),
        "du says {kib} KiB for 5,000,010 bytes"
    );
}

/// SIGTERM while a close()/fsync() is uploading: the upload finishes and is acknowledged, what
/// was acknowledged before is on MEGA, and a file still open with unsaved writes keeps them in
/// its staging file; the daemon exits and the mount is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_loses_nothing_acknowledged() {
    let env = Env::start().await;
    let c = env.account("term@example.com").await;
    let mut m = Mount::start(&env, "term@example.com", &[], true);
    let p = m.path("before.txt");
    op("write", move || std::fs::write(p, b"acknowledged").unwrap()).await;
    // A file left open with writes, and a big one whose fsync is uploading (slowly).
    let p = m.path("open.txt");
    let open = op("open", move || {
        let mut f = std::fs::File::create(p).unwrap();
        std::io::Write::write_all(&mut f, b"unsaved").unwrap();
        f
    })
    .await;
    env.server.faults().update(|f| f.latency_ms = 250);
    let big = data(8_000_000, 5);
    let (tx, rx) = std::sync::mpsc::channel();
    let (p, b) = (m.path("big.bin"), big.clone());
    let writer = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::create(p).unwrap();
        std::io::Write::write_all(&mut f, &b).unwrap();
        tx.send(()).unwrap();
        f.sync_all()
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the upload is under way
                                                          // Unsaved writes to the open file, then SIGTERM (without forking: a forked child would
                                                          // close its copy of the descriptors on exec, and that close commits).
    let open = op("write", move || {
        let mut open = open;
        std::io::Write::write_all(&mut open, b" writes").unwrap();
        open
    })
    .await;
    let mut child = m.child.take().unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let synced = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("fsync hung")
        .unwrap();
    let status = op("daemon exit", move || child.wait().unwrap()).await;
    let api_url = env.server.base_url().to_string();
    assert!(status.success(), "daemon: {status}");
    assert!(!is_mounted(&m.dir), "still mounted");
    env.server.faults().update(|f| f.latency_ms = 0);

    c.fetch().await.unwrap();
    let n = c.resolve("/before.txt").unwrap();
    assert_eq!(c.download_to_vec(&n.handle).await.unwrap(), b"acknowledged");
    // The fsync in progress was let finish: acknowledged, and on MEGA.
    synced.expect("fsync during shutdown");
    let n = c.resolve("/big.bin").unwrap();
    assert_eq!(c.download_to_vec(&n.handle).await.unwrap(), big);
    // The file still open: its writes are kept in its staging file, encrypted (or, if a close
    // of a copy of its descriptor in a process another test forked committed them, on MEGA).
    let staging = m.home.join("cache/mega-mount/staging");
    let kept = staging_files(&staging);
    for p in &kept {
        let bytes = std::fs::read(p).unwrap();
        assert!(
            !bytes.windows(7).any(|w| w == b"unsaved"),
            "plaintext in {}",
            p.display()
        );
    }
    let committed = match c.resolve("/open.txt") {
        Ok(n) => c.download_to_vec(&n.handle).await.unwrap(),
        Err(_) => Vec::new(),
    };
    let want = b"unsaved writes".to_vec();
    assert!(
        !kept.is_empty() || committed == want,
        "lost: nothing staged, remote {committed:?}"
    );
    drop(open);

    // The next start uploads what an earlier run left behind, beside the file it was for.
    if !kept.is_empty() {
        let mount_dir = m.dir.clone();
        let home = m.home.clone();
        let out = op("restart", move || {
            restart_and_stop(&api_url, "term@example.com", &home, &mount_dir)
        })
        .await;
        c.fetch().await.unwrap();
        let recovered = recovered_files(&c, "open");
        if committed == want {
            // Already saved by such a close: the staging file held nothing unsaved.
            assert!(recovered.is_empty(), "{recovered:?}");
        } else {
            assert!(
                out.contains("earlier run") && out.contains("/open.txt"),
                "no start-up message: {out}"
            );
            assert_eq!(recovered.len(), 1, "{recovered:?}");
            assert_eq!(c.download_to_vec(&recovered[0].handle).await.unwrap(), want);
        }
        assert!(staging_files(&staging).is_empty(), "removed once saved");
    }
}

/// The staging files (not an upload's record beside one, nor a spare: an emptied staging
/// file kept for reuse) in a staging directory.
fn staging_files(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| {
                    p.extension().is_none() && !mega_mount::transfer::StagedFile::is_blank(p)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Files at the root called `<stem> (unsaved …)`.
fn recovered_files(c: &mega_mount::Client, stem: &str) -> Vec<mega_mount::tree::Node> {
    let root = c.root().unwrap().handle;
    c.children(&root)
        .unwrap()
        .into_iter()
        .filter(|n| n.name.starts_with(&format!("{stem} (unsaved ")))
        .collect()
}

/// Starts the daemon in the foreground over `dir`, waits for the mount, unmounts it, and
/// returns what it logged.
fn restart_and_stop(
    api_url: &str,
    email: &str,
    home: &std::path::Path,
    dir: &std::path::Path,
) -> String {
    // Not `is_mounted`: a killed daemon leaves its dead mountpoint in the mount table, so
    // the new daemon's own "ready" line is the only sign that it has mounted.
    let mut child = daemon(api_url, email, home)
        .arg(dir)
        .arg("--foreground")
        .arg("--notify-ready")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut s);
        s
    });
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
    if !line.contains("mega-mount: ready") {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the restarted mount did not come up: {}",
            log.join().unwrap()
        );
    }
    let _ = Command::new("fusermount3").arg("-u").arg(dir).status();
    let _ = child.wait();
    log.join().unwrap()
}

/// Many processes reading and writing different files at once are served concurrently: with
/// every transfer slowed down on the server, several downloads and several uploads (each file
/// is a single chunk, so one request per file) are in progress at the same moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_read_and_write_concurrently() {
    let env = Env::start().await;
    let c = env.account("many@example.com").await;
    let root = c.root().unwrap().handle;
    const N: usize = 6;
    for i in 0..N {
        let body = data(100_000, i as u8);
        c.upload(&root, &format!("r{i}"), &mut &body[..], 100_000, 0, None)
            .await
            .unwrap();
    }
    let m = Mount::start(&env, "many@example.com", &["--n-threads", "8"], true);
    let p = m.path("");
    op("list", move || std::fs::read_dir(p).unwrap().count()).await;
    for i in 0..N {
        std::fs::write(
            env.dir.path().join(format!("w{i}")),
            data(90_000, 50 + i as u8),
        )
        .unwrap();
    }
    env.server.faults().update(|f| f.latency_ms = 400);
    env.server.stats().downloads.reset_peak();
    env.server.stats().uploads.reset_peak();
    let mut procs = Vec::new();
    for i in 0..N {
        let read = Command::new("cat")
            .arg(m.path(&format!("r{i}")))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let write = Command::new("cp")
            .arg(env.dir.path().join(format!("w{i}")))
            .arg(m.path(&format!("w{i}")))
            .spawn()
            .unwrap();
        procs.push((i, read, write));
    }
    for (i, read, mut write) in procs {
        let out = op("cat", move || read.wait_with_output().unwrap()).await;
        assert!(out.status.success());
        assert_eq!(out.stdout, data(100_000, i as u8), "r{i}");
        assert!(op("cp", move || write.wait().unwrap()).await.success());
    }
    env.server.faults().update(|f| f.latency_ms = 0);
    let (downloads, uploads) = (
        env.server.stats().downloads.peak(),
        env.server.stats().uploads.peak(),
    );
    assert!(downloads >= 3, "at most {downloads} download(s) at once");
    assert!(uploads >= 3, "at most {uploads} upload(s) at once");
    c.fetch().await.unwrap();
    for i in 0..N {
        let n = c.resolve(&format!("/w{i}")).unwrap();
        assert_eq!(
            c.download_to_vec(&n.handle).await.unwrap(),
            data(90_000, 50 + i as u8)
        );
    }
}

/// Kills a foreground daemon with SIGKILL: the mountpoint stays in the mount table with no
/// daemon behind it ("Transport endpoint is not connected").
async fn dead_mount(env: &Env, email: &str) -> Mount {
    let mut m = Mount::start(env, email, &[], true);
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let dir = m.dir.clone();
    let e = op("stat a dead mount", move || {
        std::fs::metadata(&dir).unwrap_err()
    })
    .await;
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");
    m
}

/// A mountpoint left dead by a killed daemon is detached and mounted again, with a word
/// about it; before, the user had to run `fusermount3 -u` first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_mountpoint_is_recovered() {
    let env = Env::start().await;
    let c = env.account("dead@example.com").await;
    let root = c.root().unwrap().handle;
    c.upload(&root, "still.txt", &mut &b"here"[..], 4, 0, None)
        .await
        .unwrap();
    let m = dead_mount(&env, "dead@example.com").await;
    let (api, home, dir) = (
        env.server.base_url().to_string(),
        m.home.clone(),
        m.dir.clone(),
    );
    let out = op("mount again", move || {
        daemon(&api, "dead@example.com", &home)
            .arg(&dir)
            .output()
            .unwrap()
    })
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("detached"), "{err}");
    assert!(is_mounted(&m.dir));
    let p = m.path("still.txt");
    assert_eq!(op("read", move || std::fs::read(p).unwrap()).await, b"here");
}

/// The background start reports a mount that fails (here: over a dead mountpoint, with the
/// wrong password) with a non-zero exit and the reason; before, it returned 0 because the
/// dead mount was still in the mount table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_mode_reports_a_failing_mount() {
    let env = Env::start().await;
    env.account("fail@example.com").await;
    let m = dead_mount(&env, "fail@example.com").await;
    // A home without the saved session of the first mount: the password is needed.
    let home = env.dir.path().join("fail-fresh-home");
    let (api, dir) = (env.server.base_url().to_string(), m.dir.clone());
    let out = op("mount with a wrong password", move || {
        daemon(&api, "fail@example.com", &home)
            .env("MEGA_PASSWORD", "not the password")
            .arg(&dir)
            .output()
            .unwrap()
    })
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exited 0: {err}");
    assert!(err.contains("wrong e-mail or password"), "{err}");
    assert!(!is_mounted(&m.dir), "nothing is mounted");
}

/// While a file is being written, nothing of its content is on local disk in plaintext:
/// the staging file holds ciphertext, and its key and MEGA path are wrapped by the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_being_written_leaves_no_plaintext_on_disk() {
    let env = Env::start().await;
    env.account("plain@example.com").await;
    let m = Mount::start(&env, "plain@example.com", &[], true);
    let marker = b"THE-SECRET-MARKER-d41d8cd98f00b204".to_vec();
    let p = m.path("diary-of-a-secret.txt");
    let m2 = marker.clone();
    let open = op("write and keep open", move || {
        let mut f = std::fs::File::create(p).unwrap();
        for _ in 0..1000 {
            std::io::Write::write_all(&mut f, &m2).unwrap();
        }
        f
    })
    .await;
    let mut files = Vec::new();
    let mut stack = vec![m.home.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(m.home.join("cache/mega-mount/staging"))),
        "a staging file exists: {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_slice()),
            "plaintext content in {}",
            f.display()
        );
        let name = b"diary-of-a-secret";
        assert!(
            !bytes.windows(name.len()).any(|w| w == name),
            "the file name in {}",
            f.display()
        );
    }
    // Reading it back through the mount still gives the plaintext.
    let p = m.path("diary-of-a-secret.txt");
    let back = op("read while open", move || std::fs::read(p).unwrap()).await;
    assert_eq!(back.len(), marker.len() * 1000);
    drop(open);
}

/// Trust regression (one keystream for two versions), as a user meets it: write 1 MiB of `A`,
/// `fsync`, overwrite with `B`, close — both versions are on MEGA under different keys. And
/// the same again killed with SIGKILL after the overwrite: the next start recovers the
/// unsaved `B` under a key of its own. (`Env`'s audit checks every key at the end.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_written_through_one_descriptor_have_their_own_keys() {
    let env = Env::start().await;
    let c = env.account("ks@example.com").await;
    let mut m = Mount::start(&env, "ks@example.com", &[], true);
    let (a, b) = (vec![b'A'; 1 << 20], vec![b'B'; 1 << 20]);
    let (p, q) = (m.path("f.bin"), m.path("g.bin"));
    // In a process of its own: a copy of a descriptor closed by a fork elsewhere in this
    // process would commit `g`'s unsaved writes (see `Holder`).
    let open = op("write, fsync, overwrite", move || {
        Holder::start(
            "for i, path in enumerate(sys.argv[1:]):\n    \
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n    \
                write_all(fd, b'A' * (1 << 20))\n    \
                os.fsync(fd)\n    \
                os.lseek(fd, 0, os.SEEK_SET)\n    \
                write_all(fd, b'B' * (1 << 20))\n    \
                if i == 0:\n        \
                    os.close(fd)  # the second commit\n",
            &[&p, &q],
        )
        // g kept open: the daemon dies with its last writes unsaved
    })
    .await;
    c.fetch().await.unwrap();
    let f = c.resolve("/f.bin").unwrap();
    assert!(c.download_to_vec(&f.handle).await.unwrap() == b);
    let old = c.read_tree().versions(&f.handle)[0].handle.clone();
    assert!(c.download_to_vec(&old).await.unwrap() == a);
    let report = env.assert_fresh_keystreams();
    assert_eq!(report.checked, 3, "f twice, g once");

    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    op("close after the daemon died", move || open.close()).await;
    let (api, home, dir) = (
        env.server.base_url().to_string(),
        m.home.clone(),
        m.dir.clone(),
    );
    let out = op("restart", move || {
        restart_and_stop(&api, "ks@example.com", &home, &dir)
    })
    .await;
    c.fetch().await.unwrap();
    let recovered = recovered_files(&c, "g");
    assert_eq!(recovered.len(), 1, "{out}");
    assert!(c.download_to_vec(&recovered[0].handle).await.unwrap() == b);
    let g = c.resolve("/g.bin").unwrap();
    assert!(c.download_to_vec(&g.handle).await.unwrap() == a);
    assert_eq!(env.assert_fresh_keystreams().checked, 4);
}

/// After `kill -9` in the middle of writing, the next start uploads the writes that were not
/// saved under a recovery name beside the original, which stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsaved_writes_of_a_crash_are_recovered_beside_the_original() {
    let env = Env::start().await;
    let c = env.account("crash@example.com").await;
    let root = c.root().unwrap().handle;
    c.upload(
        &root,
        "doc.txt",
        &mut &b"original"[..],
        8,
        1_600_000_000,
        None,
    )
    .await
    .unwrap();
    c.upload(
        &root,
        "other.txt",
        &mut &b"other"[..],
        5,
        1_600_000_000,
        None,
    )
    .await
    .unwrap();
    let mut m = Mount::start(&env, "crash@example.com", &[], true);
    let (p, q, r) = (m.path("doc.txt"), m.path("other.txt"), m.path("synced.txt"));
    // Held by a process of its own: a copy of a descriptor closed by a fork elsewhere in
    // this process would commit the edit (see `Holder`).
    let open = op("edit and keep open", move || {
        Holder::start(
            "f = os.open(sys.argv[1], os.O_WRONLY)\n\
             write_all(f, b'edited, not yet saved')\n\
             # Open for writing but never changed, and changed but committed by fsync:\n\
             # neither holds anything MEGA lacks, so neither is recovered.\n\
             g = os.open(sys.argv[2], os.O_WRONLY)\n\
             h = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n\
             write_all(h, b'synced')\n\
             os.fsync(h)\n",
            &[&p, &q, &r],
        )
    })
    .await;
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    op("close after the daemon died", move || open.close()).await;
    let (api, home, dir) = (
        env.server.base_url().to_string(),
        m.home.clone(),
        m.dir.clone(),
    );
    let out = op("restart", move || {
        restart_and_stop(&api, "crash@example.com", &home, &dir)
    })
    .await;
    assert!(out.contains("/doc.txt"), "{out}");
    c.fetch().await.unwrap();
    let original = c.resolve("/doc.txt").unwrap();
    assert_eq!(
        c.download_to_vec(&original.handle).await.unwrap(),
        b"original"
    );
    assert!(recovered_files(&c, "other").is_empty(), "{out}");
    assert!(recovered_files(&c, "synced").is_empty(), "{out}");
    let synced = c.resolve("/synced.txt").unwrap();
    assert_eq!(c.download_to_vec(&synced.handle).await.unwrap(), b"synced");
    let recovered = recovered_files(&c, "doc");
    assert_eq!(recovered.len(), 1, "{out}");
    assert!(recovered[0].name.ends_with(".txt"), "{}", recovered[0].name);
    assert_eq!(
        c.download_to_vec(&recovered[0].handle).await.unwrap(),
        b"edited, not yet saved"
    );
    assert!(staging_files(&m.home.join("cache/mega-mount/staging")).is_empty());
}

/// What MEGA keeps, through a real mount with `-o xattr,list_special`: `ls -a` shows the
/// Rubbish Bin and the versions folder, `cp` gets yesterday's version out of `.versions`,
/// `mv` out of the bin restores, writing into either is refused, and `getxattr` gives the
/// handle, the number of versions and a public link (which `listxattr` never names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bin_versions_and_extended_attributes_on_a_real_mount() {
    let env = Env::start().await;
    let c = env.account("keep@example.com").await;
    let m = Mount::start(
        &env,
        "keep@example.com",
        &["-o", "xattr,list_special"],
        true,
    );
    let (p, gone) = (m.path("notes.txt"), m.path("gone.txt"));
    op("versions and a deletion", move || {
        for body in ["monday", "tuesday", "wednesday"] {
            std::fs::write(&p, body).unwrap();
            std::thread::sleep(Duration::from_millis(1100));
        }
        std::fs::write(&gone, "deleted by mistake").unwrap();
        std::fs::remove_file(&gone).unwrap();
    })
    .await;
    let root = m.path("");
    let listed = op("ls -a", move || {
        let mut v: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    })
    .await;
    assert_eq!(listed, [".Rubbish Bin", ".versions", "notes.txt"]);
    let vdir = m.path(".versions/notes.txt");
    let (out, dir2) = (env.dir.path().join("monday.txt"), vdir.clone());
    let names = op("cp a version out", move || {
        let mut names: Vec<String> = std::fs::read_dir(&dir2)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        std::fs::copy(dir2.join(&names[0]), &out).unwrap();
        names
    })
    .await;
    assert_eq!(names.len(), 2);
    assert!(names
        .iter()
        .all(|n| n.starts_with("notes (") && n.ends_with(").txt")));
    assert_eq!(
        std::fs::read(env.dir.path().join("monday.txt")).unwrap(),
        b"monday"
    );
    let (v0, bin) = (vdir.join(&names[0]), m.path(".Rubbish Bin"));
    let refused = op("writes refused", move || {
        [
            std::fs::write(&v0, "x").unwrap_err().raw_os_error(),
            std::fs::write(bin.join("new.txt"), "x")
                .unwrap_err()
                .raw_os_error(),
            std::fs::remove_file(bin.join("gone.txt"))
                .unwrap_err()
                .raw_os_error(),
        ]
    })
    .await;
    assert_eq!(refused, [Some(libc::EACCES); 3]);
    let (from, to) = (m.path(".Rubbish Bin/gone.txt"), m.path("restored.txt"));
    let back = op("mv out of the bin", move || {
        std::fs::rename(&from, &to).unwrap();
        (from.exists(), std::fs::read(&to).unwrap())
    })
    .await;
    assert_eq!(back, (false, b"deleted by mistake".to_vec()));

    let p = m.path("notes.txt");
    let (handle, versions, list, link) = op("extended attributes", move || {
        let get = |name: &str| {
            let mut buf = vec![0u8; 256];
            let n = rustix::fs::getxattr(&p, name, &mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        let mut buf = vec![0u8; 256];
        let n = rustix::fs::listxattr(&p, &mut buf).unwrap();
        (
            get("user.mega.handle"),
            get("user.mega.versions"),
            String::from_utf8(buf[..n].to_vec()).unwrap(),
            get("user.mega.link"),
        )
    })
    .await;
    c.fetch().await.unwrap();
    assert_eq!(handle, c.resolve("/notes.txt").unwrap().handle.0);
    assert_eq!(versions, "2");
    assert_eq!(list, "user.mega.handle\0user.mega.versions\0");
    assert!(link.starts_with("https://mega.nz/file/"), "{link}");
}

/// Write-back on a real mount (`-o writeback`): `cp -r --preserve=timestamps` of a tree and
/// an append to an existing file return while the server holds every upload, and the mount
/// shows the new content; `df` counts it. The daemon is killed (-9) with the queue full; the
/// next start uploads every queued file in place — not as an "unsaved" copy — with its
/// content and mtime, the edited file as a new version of the old one. The folders `cp`
/// made never reached MEGA (every `p` failed): the next start makes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_back_survives_a_kill_with_the_queue_full() {
    let env = Env::start().await;
    let c = env.account("wbk@example.com").await;
    let root = c.root().unwrap().handle;
    c.upload(&root, "doc.txt", &mut &b"old\n"[..], 4, 1_600_000_000, None)
        .await
        .unwrap();
    let theirs = c
        .upload(
            &root,
            "theirs.txt",
            &mut &b"v1\n"[..],
            3,
            1_600_000_000,
            None,
        )
        .await
        .unwrap();
    let mut m = Mount::start(&env, "wbk@example.com", &["-o", "writeback"], true);
    let src = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..24u64 {
        let rel = format!("d{}/f{i}.bin", i % 3);
        let p = src.path().join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let body = data((i * 7919 % 200_000) as usize, i as u8);
        std::fs::write(&p, &body).unwrap();
        let t = 1_500_000_000 + i as i64 * 1000;
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(t as u64))
            .unwrap();
        files.push((rel, body, t));
    }
    let free = |p: PathBuf| {
        op("statvfs", move || {
            let s = rustix::fs::statvfs(&p).unwrap();
            s.f_bfree * s.f_frsize
        })
    };
    let free_before = free(m.dir.clone()).await;
    // Uploads are held, and `p` fails: the folders `cp` makes exist on the mount only.
    env.server.faults().update(|f| {
        f.ul_hold = true;
        f.unknown_commands = vec!["p".into()];
    });
    let (from, to, doc) = (src.path().to_path_buf(), m.path("tree"), m.path("doc.txt"));
    let (to2, doc2, theirs2) = (to.clone(), doc.clone(), m.path("theirs.txt"));
    op("cp -r and append while uploads are held", move || {
        let ok = Command::new("cp")
            .args(["-r", "--preserve=timestamps"])
            .arg(&from)
            .arg(&to2)
            .status()
            .unwrap();
        assert!(ok.success());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&doc2)
            .unwrap();
        std::io::Write::write_all(&mut f, b"new\n").unwrap();
        std::fs::write(&theirs2, b"mine\n").unwrap();
    })
    .await;
    let (to3, doc3, listed) = (to.clone(), doc.clone(), files.clone());
    op("read back before any upload", move || {
        for (rel, body, t) in &listed {
            let p = to3.join(rel);
            assert_eq!(&std::fs::read(&p).unwrap(), body, "{rel}");
            assert_eq!(mtime(&p), *t, "{rel}");
        }
        assert_eq!(std::fs::read(&doc3).unwrap(), b"old\nnew\n");
    })
    .await;
    // df counts what waits (every file and the edited one's staged copy).
    let queued: u64 = files.iter().map(|f| f.1.len() as u64).sum::<u64>() + 8;
    let taken = free_before - free(m.dir.clone()).await;
    assert!(taken + 4096 * 26 >= queued, "{taken} of {queued}");
    c.fetch().await.unwrap();
    assert!(
        c.resolve("/tree").is_err(),
        "folders created while `p` failed"
    );
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    env.server.faults().update(|f| {
        f.ul_hold = false;
        f.unknown_commands.clear();
    });
    // Another device saves theirs.txt meanwhile: ours must not replace that version.
    c.upload_to(
        mega_mount::client::Target {
            parent: &root,
            name: "theirs.txt",
            replaces: Some((&theirs.handle, mega_mount::client::OldVersions::Keep)),
            mode: None,
        },
        &mut &b"v2\n"[..],
        3,
        1_600_000_100,
        None,
    )
    .await
    .unwrap();
    let (api, home, dir) = (
        env.server.base_url().to_string(),
        m.home.clone(),
        m.dir.clone(),
    );
    let out = op("restart", move || {
        restart_and_stop(&api, "wbk@example.com", &home, &dir)
    })
    .await;
    c.fetch().await.unwrap();
    for (rel, body, t) in &files {
        let n = c
            .resolve(&format!("/tree/{rel}"))
            .unwrap_or_else(|e| panic!("{rel}: {e}\n{out}"));
        assert_eq!(&c.download_to_vec(&n.handle).await.unwrap(), body, "{rel}");
        assert_eq!(n.mtime, *t, "{rel}");
    }
    let d = c.resolve("/doc.txt").unwrap();
    assert_eq!(c.download_to_vec(&d.handle).await.unwrap(), b"old\nnew\n");
    assert_eq!(c.read_tree().versions(&d.handle).len(), 1, "{out}");
    assert!(recovered_files(&c, "doc").is_empty(), "{out}");
    let t = c.resolve("/theirs.txt").unwrap();
    assert_eq!(c.download_to_vec(&t.handle).await.unwrap(), b"v2\n");
    let mine = recovered_files(&c, "theirs");
    assert_eq!(mine.len(), 1, "{out}");
    assert_eq!(c.download_to_vec(&mine[0].handle).await.unwrap(), b"mine\n");
    assert!(staging_files(&m.home.join("cache/mega-mount/staging")).is_empty());
}

/// Issue 21 §3: `-o bwlimit=off:1M` paces the mount's reads (3 MiB take at least 3 s; the
/// precision over 30 s is in the benchmark), and `-o connections=` is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bwlimit_paces_the_mounts_reads() {
    let env = Env::start().await;
    let c = env.account("mbw@example.com").await;
    let root = c.root().unwrap().handle;
    let body = data(3 << 20, 41);
    c.upload(&root, "f.bin", &mut &body[..], body.len() as u64, 0, None)
        .await
        .unwrap();
    let m = Mount::start(
        &env,
        "mbw@example.com",
        &["-o", "bwlimit=off:1M,connections=2"],
        true,
    );
    let p = m.path("f.bin");
    let t = std::time::Instant::now();
    let got = op("read", move || std::fs::read(p).unwrap()).await;
    let took = t.elapsed();
    assert!(got == body);
    assert!(
        took >= Duration::from_millis(2900),
        "3 MiB at 1 MiB/s in {took:?}"
    );
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// The daemon runs its allocator's background thread (jemalloc's `jemalloc_bg_thd`). Memory
/// freed after the kernel forgets a large `find` goes back to the system while every FUSE
/// thread is idle. Without the thread, or with mimalloc, it stayed 213–425 MB above the warm
/// start at 1,000,000 nodes (doc/BENCHMARKS.md, `scripts/bench.sh large`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_gives_freed_memory_back_while_idle() {
    let env = Env::start().await;
    env.user("alloc@example.com", UserOptions::default()).await;
    let m = Mount::start(&env, "alloc@example.com", &[], true);
    let pid = m.child.as_ref().unwrap().id();
    let threads = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .map(|c| c.trim().to_string())
            .collect()
    };
    let names = threads();
    assert!(
        names.iter().any(|n| n == "jemalloc_bg_thd"),
        "no allocator background thread among {names:?}"
    );
}

/// Images copied onto the mount get a thumbnail and a preview; a decompression bomb (a small
/// PNG declaring 64 megapixels, over the configured 4-megapixel limit) is stored without
/// them and never decoded: the daemon's peak RSS does not grow by what decoding it would
/// take (64 MB as grey, 256 MB as RGBA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_on_the_mount_costs_no_memory() {
    use image::ImageFormat;
    use mega_mount::transfer::fileattr::kinds;
    let env = Env::start().await;
    env.user("bomb@example.com", UserOptions::default()).await;
    let home = env.dir.path().join("bomb-home");
    std::fs::create_dir_all(home.join("config/megacmd")).unwrap();
    std::fs::write(
        home.join("config/megacmd/config.toml"),
        "graphics_max_pixels = 4000000\n",
    )
    .unwrap();
    let m = Mount::start_in(&env, "bomb@example.com", &home, &[], true);
    let pid = m.child.as_ref().unwrap().id();
    let photo = common::picture(1200, 900, ImageFormat::Jpeg);
    let p = m.path("photo.jpg");
    op("write photo", move || std::fs::write(p, photo).unwrap()).await;
    let before = peak_rss(pid);
    let bomb = bomb_png(8000, 8000);
    let p = m.path("bomb.png");
    let b = bomb.clone();
    op("write bomb", move || std::fs::write(p, b).unwrap()).await;
    let c = env.login("bomb@example.com").await;
    let photo = c.resolve("/photo.jpg").unwrap();
    assert_eq!(
        kinds(photo.fa.as_deref().unwrap()),
        ["thumbnail", "preview"]
    );
    let stored = c.resolve("/bomb.png").unwrap();
    assert_eq!(stored.fa, None);
    assert!(c.download_to_vec(&stored.handle).await.unwrap() == bomb);
    let grew = peak_rss(pid).saturating_sub(before);
    assert!(
        grew < 48 << 20,
        "the daemon's peak RSS grew by {grew} bytes"
    );
}

/// A valid greyscale PNG of `w`×`h` black pixels, deflated to a few hundred KB.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = crc32fast::Hasher::new();
        c.update(kind);
        c.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&c.finalize().to_be_bytes());
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; w as usize + 1];
    for _ in 0..h {
        z.write_all(&row).unwrap();
    }
    let idat = z.finish().unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// POSIX metadata on a real mount (issue 20 §3): an executable script, a private folder and a
/// symbolic link made with the usual tools survive a new mount (a fresh daemon), where the
/// script runs through the link and `ls -l` shows them; a file with no stored mode shows the
/// mount's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executable_script_and_a_symlink_survive_a_remount() {
    let env = Env::start().await;
    let c = env.account("px@example.com").await;
    let root = c.root().unwrap().handle;
    c.upload(&root, "plain.txt", &mut &b"x"[..], 1, 1_600_000_000, None)
        .await
        .unwrap();
    let m = Mount::start(&env, "px@example.com", &[], true);
    let (s, l, d) = (m.path("run.sh"), m.path("run-link"), m.path("bin"));
    op("make a script, a link and a folder", move || {
        std::fs::write(&s, "#!/bin/sh\necho from-mega\n").unwrap();
        let chmod = Command::new("chmod").arg("+x").arg(&s).status().unwrap();
        assert!(chmod.success());
        let ln = Command::new("ln")
            .args(["-s", "run.sh"])
            .arg(&l)
            .status()
            .unwrap();
        assert!(ln.success());
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    })
    .await;
    drop(m);

    let m = Mount::start(&env, "px@example.com", &[], true);
    let dir = m.dir.clone();
    op("the metadata after a remount", move || {
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("run.sh"), 0o755, "the executable bit");
        assert_eq!(mode("bin"), 0o700);
        assert_eq!(mode("plain.txt"), 0o644, "no stored mode: the default");
        let link = dir.join("run-link");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_link(&link).unwrap(), PathBuf::from("run.sh"));
        let out = Command::new(&link).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from-mega\n");
        let ls = Command::new("ls").arg("-l").arg(&dir).output().unwrap();
        let ls = String::from_utf8_lossy(&ls.stdout).to_string();
        assert!(ls.contains("run-link -> run.sh"), "{ls}");
        assert!(
            ls.lines()
                .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("run.sh")),
            "{ls}"
        );
        // chmod persists right away.
        let s = dir.join("run.sh");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(mode("run.sh"), 0o640);
    })
    .await;
    c.fetch().await.unwrap();
    let script = c.resolve("/run.sh").unwrap();
    assert_eq!(script.mode, Some(0o100_640));
    drop(m);
}
