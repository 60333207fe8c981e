//! The tree cache: a warm start sends no `f` and still sees what changed while the client was
//! stopped; a cursor the server no longer keeps falls back to a full fetch; a truncated,
//! corrupted or foreign cache file is discarded; the file holds no plaintext name and is
//! 0600; megacmd and a mount killed with SIGKILL during a burst of changes leave a cache from
//! which a warm start gives the same tree as a cold one.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::megacmd::Cmd;
use common::mount::Mount;
use common::*;
use mega_mount::client::Options;
use mega_mount::tree::cache;
use mega_mount::Client;
use mega_testserver::seed::{seed, SeedPlan};
use mega_testserver::UserOptions;
use mega_testserver::{Config, TestServer};

/// Every node as (path, kind, size, mtime), sorted: what two clients must agree on.
fn listing(c: &Client) -> Vec<(String, bool, u64, i64)> {
    let t = c.read_tree();
    let mut v: Vec<_> = t
        .iter()
        .map(|n| (t.path_of(&n.handle), n.is_file(), n.size, n.mtime))
        .collect();
    v.sort();
    v
}

fn opts(dir: &Path) -> Options {
    Options {
        tree_cache: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

async fn login_cached(env: &Env, email: &str, dir: &Path) -> Client {
    Client::login_with(env.api_config(), email, PASSWORD, None, opts(dir))
        .await
        .unwrap()
}

/// The cache file of `c`'s account in `dir`.
fn file_of(env: &Env, c: &Client, dir: &Path) -> PathBuf {
    cache::file_for(dir, env.api_config().base_url.as_str(), &c.session().user)
}

/// The cursor stored in the only cache file in `dir`.
fn stored_sn(dir: &Path) -> Option<String> {
    let path = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "db"))?;
    let conn = rusqlite::Connection::open(path).ok()?;
    conn.query_row("SELECT value FROM meta WHERE name = 'sn'", [], |r| r.get(0))
        .ok()
}

async fn env_with_event_log(n: i64) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("server"));
    cfg.wait_timeout = Duration::from_secs(5);
    cfg.limits.event_log = n;
    let server = TestServer::start(cfg).await.unwrap();
    Env { server, dir }
}

/// A small tree: folders, files with content, a rename and a file in the Rubbish Bin.
async fn populate(c: &Client) {
    let root = c.root().unwrap().handle;
    let docs = c.mkdir(&root, "Quarterly-report-folder").await.unwrap();
    let body = data(3000, 1);
    c.upload(
        &docs.handle,
        "Quarterly-report.txt",
        &mut &body[..],
        3000,
        1_600_000_000,
        None,
    )
    .await
    .unwrap();
    let sub = c.mkdir(&docs.handle, "sub").await.unwrap();
    c.upload(
        &sub.handle,
        "b.bin",
        &mut &body[..100],
        100,
        1_600_000_100,
        None,
    )
    .await
    .unwrap();
    let old = c.mkdir(&root, "old").await.unwrap();
    c.trash(&old.handle).await.unwrap();
}

#[tokio::test]
async fn a_warm_start_sends_no_f_and_sees_changes_made_while_stopped() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let first = login_cached(&env, "a@example.com", &cache_dir).await;
    populate(&first).await;
    let before = listing(&first);
    drop(first);
    let f_count = env.server.stats().commands("f");

    let warm = login_cached(&env, "a@example.com", &cache_dir).await;
    assert_eq!(
        env.server.stats().commands("f"),
        f_count,
        "a warm start sent `f`"
    );
    assert_eq!(listing(&warm), before);
    let docs = warm.resolve("/Quarterly-report-folder").unwrap();
    let file = warm
        .resolve("/Quarterly-report-folder/Quarterly-report.txt")
        .unwrap();
    // A cached file's key is right: its content downloads and verifies.
    let got = warm.download_to_vec(&file.handle).await.unwrap();
    assert_eq!(got, data(3000, 1));
    drop(warm);

    // Another client changes things while ours is stopped.
    let other = env.login("a@example.com").await;
    let root = other.root().unwrap().handle;
    other.mkdir(&root, "made-while-away").await.unwrap();
    other.rename(&file.handle, "renamed.txt").await.unwrap();
    let sub = other.resolve("/Quarterly-report-folder/sub").unwrap();
    other.delete(&sub.handle).await.unwrap();
    let body = data(500, 2);
    other
        .upload(
            &docs.handle,
            "new.bin",
            &mut &body[..],
            500,
            1_700_000_000,
            None,
        )
        .await
        .unwrap();
    let truth = listing(&other);

    let warm = login_cached(&env, "a@example.com", &cache_dir).await;
    assert_eq!(
        env.server.stats().commands("f"),
        f_count + 1,
        "only `other` fetched"
    );
    assert_eq!(listing(&warm), truth);
    assert!(warm.resolve("/made-while-away").is_ok());
    assert!(warm.resolve("/Quarterly-report-folder/sub").is_err());
    // And what it caught up on was committed: the next start needs no catch-up either.
    drop(warm);
    let again = login_cached(&env, "a@example.com", &cache_dir).await;
    assert_eq!(listing(&again), truth);
    assert_eq!(env.server.stats().commands("f"), f_count + 1);
}

#[tokio::test]
async fn a_cursor_the_server_dropped_falls_back_to_a_full_fetch() {
    let env = env_with_event_log(4).await;
    env.user("a@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let first = login_cached(&env, "a@example.com", &cache_dir).await;
    populate(&first).await;
    drop(first);
    let other = env.login("a@example.com").await;
    let root = other.root().unwrap().handle;
    for i in 0..10 {
        other.mkdir(&root, &format!("d{i}")).await.unwrap();
    }
    let truth = listing(&other);
    let f_count = env.server.stats().commands("f");
    let warm = login_cached(&env, "a@example.com", &cache_dir).await;
    assert_eq!(
        env.server.stats().commands("f"),
        f_count + 1,
        "no fallback fetch"
    );
    assert_eq!(listing(&warm), truth);
    drop(warm);
    // The fallback rewrote the cache: the next start is warm again.
    let warm = login_cached(&env, "a@example.com", &cache_dir).await;
    assert_eq!(env.server.stats().commands("f"), f_count + 1);
    assert_eq!(listing(&warm), truth);
}

#[tokio::test]
async fn a_truncated_corrupted_or_foreign_cache_is_discarded() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    env.user("b@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let a = login_cached(&env, "a@example.com", &cache_dir).await;
    populate(&a).await;
    let truth = listing(&a);
    let path = file_of(&env, &a, &cache_dir);
    drop(a);
    // Make sure a later commit is in the main file, then damage it three ways.
    let good = std::fs::read(&path).unwrap();
    assert!(good.len() > 4096, "cache file is {} bytes", good.len());
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("zero length", Vec::new()),
        ("garbage after the schema page", {
            let mut g = good.clone();
            for b in &mut g[4096..] {
                *b = 0xA5;
            }
            g
        }),
        (
            "not a database",
            b"hello, I am not SQLite at all".repeat(200),
        ),
    ];
    for (what, bytes) in damages {
        cache::remove(&path);
        std::fs::write(&path, &bytes).unwrap();
        let f_count = env.server.stats().commands("f");
        let c = login_cached(&env, "a@example.com", &cache_dir).await;
        assert_eq!(
            env.server.stats().commands("f"),
            f_count + 1,
            "{what}: not refetched"
        );
        assert_eq!(listing(&c), truth, "{what}");
        drop(c);
        // The damaged file was replaced by a good one.
        let c = login_cached(&env, "a@example.com", &cache_dir).await;
        assert_eq!(
            env.server.stats().commands("f"),
            f_count + 1,
            "{what}: not rebuilt"
        );
        assert_eq!(listing(&c), truth, "{what}");
    }
    // Account b given a's cache under b's name: another account's, discarded.
    let b = env.login("b@example.com").await;
    let b_path = file_of(&env, &b, &cache_dir);
    assert_ne!(b_path, path, "two accounts share a cache file name");
    let b_truth = listing(&b);
    drop(b);
    std::fs::copy(&path, &b_path).unwrap();
    let f_count = env.server.stats().commands("f");
    let b = login_cached(&env, "b@example.com", &cache_dir).await;
    assert_eq!(env.server.stats().commands("f"), f_count + 1);
    assert_eq!(listing(&b), b_truth);
    assert!(b.resolve("/Quarterly-report-folder").is_err());
}

#[tokio::test]
async fn the_cache_holds_no_plaintext_name_and_is_private() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let a = login_cached(&env, "a@example.com", &cache_dir).await;
    populate(&a).await;
    let path = file_of(&env, &a, &cache_dir);
    // One more batch through a commit, so the WAL holds data too.
    let other = env.login("a@example.com").await;
    let root = other.root().unwrap().handle;
    other.mkdir(&root, "Quarterly-report-second").await.unwrap();
    drop(a);
    let a = login_cached(&env, "a@example.com", &cache_dir).await;
    assert!(a.resolve("/Quarterly-report-second").is_ok());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_dir), 0o700);
    let mut files = 0;
    for e in std::fs::read_dir(&cache_dir).unwrap() {
        let p = e.unwrap().path();
        files += 1;
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        let bytes = std::fs::read(&p).unwrap();
        for needle in ["Quarterly", "report", "b.bin"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds {needle:?}",
                p.display()
            );
        }
    }
    assert!(files >= 1);
    assert!(path.exists());
    // Logging out removes it.
    a.logout().await.unwrap();
    assert!(!path.exists());
}

#[tokio::test]
async fn megacmd_uses_the_cache_and_no_cache_bypasses_it() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let c = env.login("a@example.com").await;
    populate(&c).await;
    let cmd = Cmd::new(&env, "a@example.com");
    let f = || env.server.stats().commands("f");
    let n = f();
    let cold = cmd.ok(&["ls", "-r", "mega:/"]).await.stdout;
    assert_eq!(f(), n + 1);
    let warm = cmd.ok(&["ls", "-r", "mega:/"]).await.stdout;
    assert_eq!(f(), n + 1, "the second megacmd run fetched the tree");
    assert_eq!(warm, cold);
    let root = c.root().unwrap().handle;
    c.mkdir(&root, "later").await.unwrap();
    let warm = cmd.ok(&["ls", "mega:/"]).await.stdout;
    assert!(warm.contains("later"), "{warm}");
    assert_eq!(f(), n + 1);
    cmd.ok(&["--no-cache", "ls", "mega:/"]).await;
    assert_eq!(f(), n + 2, "--no-cache did not fetch");
    let trees = cmd.home.join(".cache/mega-mount/trees");
    assert!(stored_sn(&trees).is_some());
    // Logging out removes the account's cache.
    cmd.ok(&["logout"]).await;
    assert_eq!(stored_sn(&trees), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_killed_during_a_burst_leaves_a_cache_that_warms_to_the_same_tree() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let writer = env.login("a@example.com").await;
    populate(&writer).await;
    let root = writer.root().unwrap().handle;
    let m = Mount::start(&env, "a@example.com", &[], true);
    let cache_dir = m.home.join("cache/mega-mount/trees");
    // The first start writes the cache file in the background while the tree is in use.
    common::eventually(30, "the mount wrote its cache at start", || {
        stored_sn(&cache_dir).is_some()
    })
    .await;
    let initial = stored_sn(&cache_dir);
    assert!(initial.is_some(), "the mount wrote no cache at start");
    // A burst of remote changes, the mount following them, killed in the middle.
    let mut made = Vec::new();
    for i in 0..60 {
        let d = writer.mkdir(&root, &format!("burst-{i}")).await.unwrap();
        if i % 3 == 0 {
            writer
                .rename(&d.handle, &format!("burst-{i}-renamed"))
                .await
                .unwrap();
        }
        if i % 5 == 0 {
            if let Some(prev) = made.pop() {
                writer.delete(&prev).await.unwrap();
            }
        }
        made.push(d.handle);
        if i == 20 {
            // The mount commits what it follows: the cursor in its cache moves on from where
            // the mount started.
            eventually(20, "the mount commits to its cache", || {
                stored_sn(&cache_dir) != initial
            })
            .await;
        }
        if i == 40 {
            let mut m = m;
            let child = m.child.as_mut().unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
            drop(m);
            break;
        }
    }
    // More changes after the kill.
    for i in 0..5 {
        writer.mkdir(&root, &format!("after-{i}")).await.unwrap();
    }
    let truth = listing(&writer);
    let f_count = env.server.stats().commands("f");
    let warm = login_cached(&env, "a@example.com", &cache_dir).await;
    assert_eq!(
        env.server.stats().commands("f"),
        f_count,
        "the mount's cache was not usable"
    );
    assert_eq!(listing(&warm), truth);
}

#[tokio::test]
async fn shares_both_ways_survive_the_cache() {
    use mega_mount::tree::Access;
    let env = Env::start().await;
    env.user("alice@example.com", UserOptions::default()).await;
    env.user("bob@example.com", UserOptions::default()).await;
    let alice = env.login("alice@example.com").await;
    {
        let bob = env.login("bob@example.com").await;
        befriend(&alice, "alice@example.com", &bob, "bob@example.com").await;
    }
    let root = alice.root().unwrap().handle;
    let team = alice.mkdir(&root, "Team plans").await.unwrap();
    let body = data(1200, 3);
    alice
        .upload(
            &team.handle,
            "plan.txt",
            &mut &body[..],
            1200,
            1_650_000_000,
            None,
        )
        .await
        .unwrap();
    alice
        .share(&team.handle, "bob@example.com", Access::ReadWrite)
        .await
        .unwrap();
    let cache_dir = env.dir.path().join("cache");
    let bob = login_cached(&env, "bob@example.com", &cache_dir).await;
    let truth = listing(&bob);
    let shares = |c: &Client| {
        let t = c.read_tree();
        t.inshares()
            .iter()
            .map(|n| (n.name.clone(), n.inshare.clone()))
            .collect::<Vec<_>>()
    };
    let shared = shares(&bob);
    assert_eq!(shared.len(), 1);
    drop(bob);
    let f_count = env.server.stats().commands("f");
    let bob = login_cached(&env, "bob@example.com", &cache_dir).await;
    assert_eq!(env.server.stats().commands("f"), f_count, "not warm");
    assert_eq!(listing(&bob), truth);
    assert_eq!(shares(&bob), shared);
    // The shared file's key came back from the cache: it downloads and verifies.
    let file = {
        let t = bob.read_tree();
        let top = t.inshares()[0].handle.clone();
        t.children(&top)[0].handle.clone()
    };
    assert_eq!(bob.download_to_vec(&file).await.unwrap(), body);
    // alice's side: her outgoing share is remembered too.
    let alice_dir = env.dir.path().join("cache-alice");
    drop(alice);
    let alice = login_cached(&env, "alice@example.com", &alice_dir).await;
    let outs = alice.read_tree().outshares().to_vec();
    drop(alice);
    let alice = login_cached(&env, "alice@example.com", &alice_dir).await;
    assert_eq!(alice.read_tree().outshares(), outs.as_slice());
    assert_eq!(outs.len(), 1);
}

#[tokio::test]
async fn a_cache_that_cannot_be_written_leaves_the_client_working() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    // The cache "directory" is a file: nothing can be created under it.
    let not_a_dir = env.dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let c = login_cached(&env, "a@example.com", &not_a_dir).await;
    populate(&c).await;
    assert!(c.resolve("/Quarterly-report-folder/sub").is_ok());
    drop(c);
    let f_count = env.server.stats().commands("f");
    let c = login_cached(&env, "a@example.com", &not_a_dir).await;
    assert_eq!(env.server.stats().commands("f"), f_count + 1);
    assert!(c.resolve("/Quarterly-report-folder/sub").is_ok());
}

/// The tree is served from the cache: a warm start holds few nodes in memory. A row found
/// damaged while it is (its checksum no longer matches) is not served; the watcher fetches
/// the tree again, replaces the file, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_found_while_watching_refetches_the_tree() {
    use mega_mount::client::watch::TreeEvent;
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let first = login_cached(&env, "a@example.com", &cache_dir).await;
    populate(&first).await;
    let truth = listing(&first);
    drop(first);
    // Catches up with what `first` did (all of it read) and commits it.
    drop(login_cached(&env, "a@example.com", &cache_dir).await);

    let warm = std::sync::Arc::new(login_cached(&env, "a@example.com", &cache_dir).await);
    {
        let t = warm.read_tree();
        assert!(
            t.resident() < t.len(),
            "a warm start read all {} nodes",
            t.len()
        );
    }
    let mut watcher = warm.watch().unwrap();
    // Files inside folders: not read by the warm start.
    let path = file_of(&env, &warm, &cache_dir);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let changed = conn
        .execute(
            "UPDATE nodes SET s = s + 1 WHERE t = 0 AND p IN (SELECT h FROM nodes WHERE t = 1)",
            [],
        )
        .unwrap();
    assert!(changed >= 2);
    drop(conn);
    let f_count = env.server.stats().commands("f");
    let report = "/Quarterly-report-folder/Quarterly-report.txt";
    assert!(warm.resolve(report).is_err(), "a damaged row was served");
    match tokio::time::timeout(Duration::from_secs(20), watcher.events.recv()).await {
        Ok(Some(TreeEvent::Reloaded)) => {}
        other => panic!("expected a reload, got {other:?}"),
    }
    assert_eq!(env.server.stats().commands("f"), f_count + 1);
    assert_eq!(warm.resolve(report).unwrap().size, 3000);
    assert_eq!(listing(&warm), truth);
    drop(watcher);
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The damaged file was replaced: the next start is warm and right.
    let again = login_cached(&env, "a@example.com", &cache_dir).await;
    assert_eq!(env.server.stats().commands("f"), f_count + 1);
    assert_eq!(listing(&again), truth);
}

/// One client at a time writes an account's cache (and serves its tree from it); another
/// one running beside it reads the file whole at start and never writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_writes_the_cache_and_another_only_reads_it() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let first = login_cached(&env, "a@example.com", &cache_dir).await;
    populate(&first).await;
    drop(first);
    drop(login_cached(&env, "a@example.com", &cache_dir).await);
    let f_count = env.server.stats().commands("f");
    let writer = login_cached(&env, "a@example.com", &cache_dir).await;
    let reader = std::sync::Arc::new(login_cached(&env, "a@example.com", &cache_dir).await);
    assert_eq!(env.server.stats().commands("f"), f_count, "not both warm");
    {
        let (w, r) = (writer.read_tree(), reader.read_tree());
        assert!(w.resident() < w.len(), "the writer read the whole file");
        assert_eq!(r.resident(), r.len(), "the reader is served from the file");
    }
    let sn = stored_sn(&cache_dir);
    let watcher = reader.watch().unwrap();
    let root = reader.root().unwrap().handle;
    reader.mkdir(&root, "by-the-reader").await.unwrap();
    // Its own change comes back on the event channel; a writer would commit it then.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stored_sn(&cache_dir), sn, "the reader wrote the file");
    drop(watcher);
    drop(reader);
    drop(writer);
    let next = login_cached(&env, "a@example.com", &cache_dir).await;
    assert_eq!(env.server.stats().commands("f"), f_count);
    assert!(next.resolve("/by-the-reader").is_ok());
    assert_eq!(listing(&next), listing(&env.login("a@example.com").await));
}

/// Every path below `root` on a mount, with its size (0 for folders), sorted.
fn walk_mount(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if md.is_dir() {
                stack.push(e.path());
                out.push((rel, 0));
            } else {
                out.push((rel, md.len()));
            }
        }
    }
    out.sort();
    out
}

/// A mount whose tree is served from the cache with no unchanged node kept in memory
/// (`-o tree_nodes=0`: dropped after every commit and every second) shows what another client
/// changes in folders it never listed, moves between them and removals, and reads files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_keeping_no_nodes_in_memory_follows_every_change() {
    use common::mount::{eventually_on_mount, op};
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let writer = env.login("a@example.com").await;
    populate(&writer).await;
    let args = ["-o", "tree_nodes=0"];
    let home = env.dir.path().join("mount-home");
    // The first mount fetches the tree and writes the cache; the second starts from it.
    drop(Mount::start_in(&env, "a@example.com", &home, &args, true));
    let f_count = env.server.stats().commands("f");
    let m = Mount::start_in(&env, "a@example.com", &home, &args, true);
    assert_eq!(
        env.server.stats().commands("f"),
        f_count,
        "not a warm start"
    );

    let root = writer.root().unwrap().handle;
    let docs = writer.resolve("/Quarterly-report-folder").unwrap().handle;
    let sub = writer
        .resolve("/Quarterly-report-folder/sub")
        .unwrap()
        .handle;
    let deep = writer.mkdir(&sub, "deep").await.unwrap();
    let body = data(70_000, 9);
    writer
        .upload(
            &deep.handle,
            "new.bin",
            &mut &body[..],
            70_000,
            1_700_000_000,
            None,
        )
        .await
        .unwrap();
    let moved = writer.mkdir(&root, "to-move").await.unwrap();
    writer.move_to(&moved.handle, &docs).await.unwrap();
    let report = writer
        .resolve("/Quarterly-report-folder/Quarterly-report.txt")
        .unwrap()
        .handle;
    writer.rename(&report, "renamed.txt").await.unwrap();
    let b = writer
        .resolve("/Quarterly-report-folder/sub/b.bin")
        .unwrap()
        .handle;
    writer.delete(&b).await.unwrap();

    let new_file = m.path("Quarterly-report-folder/sub/deep/new.bin");
    let p = new_file.clone();
    eventually_on_mount(
        20,
        "a file made in folders the mount never listed",
        move || p.exists(),
    )
    .await;
    let got = op("read the new file", move || {
        std::fs::read(new_file).unwrap()
    })
    .await;
    assert_eq!(got, body);
    let mut want: Vec<(String, u64)> = listing(&writer)
        .into_iter()
        .filter_map(|(path, file, size, _)| {
            // Below the Cloud Drive only (not `//Rubbish Bin/…`).
            let rel = path.strip_prefix('/').filter(|r| !r.starts_with('/'))?;
            (!rel.is_empty()).then(|| (rel.to_string(), if file { size } else { 0 }))
        })
        .collect();
    want.sort();
    let dir = m.dir.clone();
    let w = want.clone();
    eventually_on_mount(
        20,
        "the mount shows the same tree as the server",
        move || walk_mount(&dir) == w,
    )
    .await;
    // Again after the mount dropped what it read (it keeps none).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = m.dir.clone();
    assert_eq!(op("walk again", move || walk_mount(&dir)).await, want);
}

/// The first start with the cache does not wait for the file to be written: the client is
/// in use and follows changes while it is. Changes made meanwhile, its own and remote ones,
/// are committed once the file is there, so the next start is warm and has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_cache_is_first_written_are_kept() {
    let env = Env::start().await;
    let email = "big@example.com";
    env.user(email, UserOptions::default()).await;
    let plan = SeedPlan {
        folders: 1_000,
        files: 99_000,
        depth: 2,
    };
    seed(env.server.store(), email, PASSWORD, plan).unwrap();
    let other = env.login(email).await;
    let dir = env.dir.path().join("cache");
    let first = std::sync::Arc::new(login_cached(&env, email, &dir).await);
    assert!(first.cache_writing(), "login waited for the cache file");
    let mut watcher = first.watch().unwrap();

    // Its own changes (applied to its tree at once): a new folder with a file.
    let root = first.root().unwrap().handle;
    let made = first.mkdir(&root, "made while writing").await.unwrap();
    let body = data(500, 3);
    first
        .upload(
            &made.handle,
            "new.txt",
            &mut &body[..],
            500,
            1_600_000_000,
            None,
        )
        .await
        .unwrap();
    // Writing 100,000 nodes takes about a second in a debug build; these took milliseconds.
    assert!(
        first.cache_writing(),
        "the cache file was written before the changes were made"
    );
    // Remote changes, as they arrive: a rename and a removal.
    let renamed = other.resolve("/folder 0000000").unwrap().handle;
    other.rename(&renamed, "renamed folder").await.unwrap();
    let removed = other.resolve("/folder 0000001").unwrap().handle;
    other.delete(&removed).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while first.resolve("/folder 0000001").is_ok() || first.resolve("/renamed folder").is_err()
        {
            watcher.events.recv().await.unwrap();
        }
    })
    .await
    .expect("the remote changes did not arrive");
    first.finish_cache_write().await;
    assert!(!first.cache_writing());
    let want = listing(&env.login(email).await);
    assert!(want
        .iter()
        .any(|(p, ..)| p == "/made while writing/new.txt"));
    assert_eq!(listing(&first), want);
    drop(watcher);
    drop(first);

    let f_count = env.server.stats().commands("f");
    let warm = login_cached(&env, email, &dir).await;
    assert_eq!(env.server.stats().commands("f"), f_count, "not warm");
    assert_eq!(listing(&warm), want);
}

/// Trust regression (a second process missed an acknowledged change: `megacmd list` beside a
/// mount showed 199 of 200 new files in 2 rounds of 40): a client's own echo can reach its
/// event channel before the reply of the command is in its tree. The cache must then not be
/// committed with a cursor past that echo, or a process starting from the file never sees
/// the change. Deterministic: the server holds every reply back after sending the packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_sees_every_change_the_first_acknowledged() {
    let env = Env::start().await;
    env.user("ack@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let writer = std::sync::Arc::new(login_cached(&env, "ack@example.com", &cache_dir).await);
    let mut watcher = writer.watch().unwrap();
    let root = writer.root().unwrap().handle;
    env.server.faults().update(|f| f.cs_reply_delay_ms = 400);
    for i in 0..3 {
        writer.mkdir(&root, &format!("d{i}")).await.unwrap();
        // The echo was seen (and a commit made) before the reply came back.
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(100), watcher.events.recv()).await
        {}
        // Acknowledged: a second process starts now, from the cache file.
        let reader = login_cached(&env, "ack@example.com", &cache_dir).await;
        for j in 0..=i {
            assert!(
                reader.resolve(&format!("/d{j}")).is_ok(),
                "round {i}: the reader misses d{j}"
            );
        }
    }
    env.server.faults().update(|f| f.cs_reply_delay_ms = 0);
}

/// Trust regression (a folder whose cached row failed its checksum was served as empty): a
/// lookup or listing that meets damage is an error — for the engine, megacmd (a failed
/// command, then a good run once the file is rebuilt), two-way sync (no plan made: the local
/// file whose remote row is damaged is not deleted) and the mount (EIO, then the right
/// listing once the tree is fetched again) — never an empty or short folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cache_is_an_error_never_an_empty_folder() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let first = login_cached(&env, "a@example.com", &cache_dir).await;
    populate(&first).await;
    first.finish_cache_write().await;
    drop(first);
    let second = login_cached(&env, "a@example.com", &cache_dir).await;
    second.finish_cache_write().await;
    drop(second);
    // The rows of the files inside folders (not read at start) fail their checksums.
    let damage = |path: &Path| {
        let conn = rusqlite::Connection::open(path).unwrap();
        let n = conn
            .execute(
                "UPDATE nodes SET s = s + 1 \
                 WHERE t = 0 AND p IN (SELECT h FROM nodes WHERE t = 1)",
                [],
            )
            .unwrap();
        assert!(n >= 2);
    };
    let warm = login_cached(&env, "a@example.com", &cache_dir).await;
    damage(&file_of(&env, &warm, &cache_dir));
    let docs = warm.resolve("/Quarterly-report-folder").unwrap();
    let e = warm.children(&docs.handle).unwrap_err();
    assert!(matches!(e, mega_mount::Error::CacheDamaged { .. }), "{e}");
    let e = warm
        .resolve("/Quarterly-report-folder/Quarterly-report.txt")
        .unwrap_err();
    assert!(matches!(e, mega_mount::Error::CacheDamaged { .. }), "{e}");
    assert!(mega_mount::sync::oneway::remote_listing(&warm, &docs.handle).is_err());
    // Nothing is decided on it either.
    assert!(warm.mkdir(&docs.handle, "new").await.is_err());
    drop(warm);

    // megacmd: the command fails; the next one (the file rebuilt) lists it right.
    let cmd = Cmd::new(&env, "a@example.com");
    let trees = cmd.home.join(".cache/mega-mount/trees");
    cmd.ok(&["ls", "mega:/"]).await;
    let file = std::fs::read_dir(&trees)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .unwrap();
    damage(&file);
    let o = cmd.run(&["ls", "mega:/Quarterly-report-folder/"]).await;
    assert_ne!(o.code, 0, "listed from a damaged cache: {}", o.stdout);
    assert!(o.stderr.contains("damaged"), "{}", o.stderr);
    assert!(!o.stdout.contains("Quarterly-report.txt"));
    let o = cmd.ok(&["ls", "mega:/Quarterly-report-folder/"]).await;
    assert!(o.stdout.contains("Quarterly-report.txt"), "{}", o.stdout);

    // Two-way sync: a remote file missing from a damaged listing is not a remote deletion.
    let local = env.dir.path().join("local");
    cmd.ok(&[
        "sync",
        "--two-way",
        &local.display().to_string(),
        "mega:/Quarterly-report-folder",
    ])
    .await;
    let synced = local.join("Quarterly-report.txt");
    assert!(synced.exists());
    damage(&file);
    let o = cmd
        .run(&[
            "sync",
            "--two-way",
            &local.display().to_string(),
            "mega:/Quarterly-report-folder",
        ])
        .await;
    assert_ne!(o.code, 0, "synced from a damaged cache: {}", o.stdout);
    assert!(
        synced.exists(),
        "a local file was removed on a damaged listing"
    );

    // The mount: EIO for the listing that met the damage, then the right one.
    let m = Mount::start(&env, "a@example.com", &[], true);
    drop(m);
    let mhome = env.dir.path().join("mount-home");
    let m = Mount::start_in(&env, "a@example.com", &mhome, &[], true);
    drop(m);
    let mfile = std::fs::read_dir(mhome.join("cache/mega-mount/trees"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .unwrap();
    damage(&mfile);
    let m = Mount::start_in(&env, "a@example.com", &mhome, &[], true);
    let p = m.path("Quarterly-report-folder");
    let names = |p: PathBuf| {
        move || -> std::io::Result<Vec<String>> {
            let mut v: Vec<String> = std::fs::read_dir(p)?
                .map(|e| e.map(|e| e.file_name().into_string().unwrap()))
                .collect::<std::io::Result<_>>()?;
            v.sort();
            Ok(v)
        }
    };
    let first = common::mount::op("ls damaged", names(p.clone())).await;
    match first {
        Err(e) => assert_eq!(e.raw_os_error(), Some(5), "{e}"),
        Ok(v) => panic!("a damaged folder listed as {v:?}"),
    }
    common::mount::eventually_on_mount(20, "the folder listed again", move || {
        names(p.clone())().is_ok_and(|v| v.contains(&"Quarterly-report.txt".to_string()))
    })
    .await;
}

/// Trust: what the cache file says about the whole tree (share keys, roots, incoming shares,
/// the cursor, the counts) is checksummed: a file whose state record was changed is not
/// trusted, and the tree is fetched instead.
#[tokio::test]
async fn a_cache_whose_state_record_changed_is_refetched() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let cache_dir = env.dir.path().join("cache");
    let a = login_cached(&env, "a@example.com", &cache_dir).await;
    populate(&a).await;
    let truth = listing(&a);
    let path = file_of(&env, &a, &cache_dir);
    a.finish_cache_write().await;
    drop(a);
    let b = login_cached(&env, "a@example.com", &cache_dir).await;
    b.finish_cache_write().await;
    drop(b);
    for (what, sql) in [
        (
            "cursor",
            "UPDATE meta SET value = value || 'x' WHERE name = 'sn'",
        ),
        (
            "incoming shares",
            "UPDATE meta SET value = replace(value, '\"inshares\":[]', \
             '\"inshares\":[\"AAAAAAAA\"]') WHERE name = 'meta'",
        ),
        (
            "node count",
            "UPDATE counts SET n = n + 1 WHERE name = 'nodes'",
        ),
    ] {
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(conn.execute(sql, []).unwrap(), 1, "{what}");
        drop(conn);
        let f_count = env.server.stats().commands("f");
        let c = login_cached(&env, "a@example.com", &cache_dir).await;
        assert_eq!(
            env.server.stats().commands("f"),
            f_count + 1,
            "{what}: a changed state record was trusted"
        );
        assert_eq!(listing(&c), truth, "{what}");
        // The refetch writes a new file in the background: the next round changes that one.
        c.finish_cache_write().await;
        drop(c);
    }
}

/// Stress (the report: `megacmd list` beside a mount showed 199 of 200 new files in 2 of 40
/// rounds): round after round, files are copied onto a mount (every `close()` returned) and
/// a megacmd started right after must list every one of them. The server holds replies back
/// a little, so that the mount's own echoes often arrive before its replies, as under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megacmd_beside_a_mount_lists_every_file_the_mount_acknowledged() {
    let env = Env::start().await;
    env.user("a@example.com", UserOptions::default()).await;
    let m = Mount::start(&env, "a@example.com", &[], true);
    // megacmd as the same user on the same machine: the mount's home and cache folder, so it
    // reads the tree cache the mount writes.
    let cmd = Cmd {
        env: &env,
        email: Some("a@example.com"),
        password: true,
        home: m.home.clone(),
    };
    let ls = |cmd: &Cmd| {
        let mut c = cmd.command(&["ls", "mega:/many/"]);
        c.env("XDG_CACHE_HOME", m.home.join("cache"));
        c
    };
    cmd.ok(&["mkdir", "mega:/many"]).await;
    let dir = m.path("many");
    common::mount::eventually_on_mount(10, "the folder on the mount", {
        let dir = dir.clone();
        move || dir.is_dir()
    })
    .await;
    env.server.faults().update(|f| f.cs_reply_delay_ms = 30);
    let mut total = 0;
    for round in 0..8 {
        let d = dir.clone();
        common::mount::op("copy files in", move || {
            for i in 0..20 {
                std::fs::write(d.join(format!("r{round}-{i}.txt")), format!("{round}/{i}"))
                    .unwrap();
            }
        })
        .await;
        total += 20;
        let out = ls(&cmd).output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = String::from_utf8_lossy(&out.stdout);
        let n = listed.lines().filter(|l| l.contains(".txt")).count();
        assert_eq!(n, total, "round {round}: megacmd listed {n} of {total}");
    }
    env.server.faults().update(|f| f.cs_reply_delay_ms = 0);
}
