//! Two-way sync against mega-testserver, with a second session changing the remote while the
//! local folder changes too: every row of the decision table, moves on both sides, conflicts,
//! deletions into debris, the `--max-delete` guard, exclusions, files that have not settled,
//! a `kill -9` in the middle of transfers followed by a restart, and `--watch`.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{data, Env, PASSWORD};
use mega_mount::sync::plan::Action;
use mega_mount::sync::{Report, SyncError, SyncOptions, Syncer};
use mega_mount::tree::NodeHandle;
use mega_mount::Client;

const BIN: &str = env!("CARGO_BIN_EXE_megacmd");

struct Pair {
    client: Arc<Client>,
    other: Client,
    local: PathBuf,
    remote: NodeHandle,
    state: PathBuf,
}

impl Pair {
    async fn new(env: &Env, email: &str) -> Pair {
        let other = env.account(email).await;
        let root = other.root().unwrap().handle;
        let remote = other.mkdir(&root, "synced").await.unwrap().handle;
        let client = Arc::new(env.login(email).await);
        let local = env.dir.path().join(format!("local-{email}"));
        std::fs::create_dir_all(&local).unwrap();
        Pair {
            client,
            other,
            local,
            remote,
            state: env.dir.path().join(format!("state-{email}")),
        }
    }

    fn opts(&self) -> SyncOptions {
        SyncOptions {
            dry_run: false,
            max_delete: None,
            settle: Duration::ZERO,
            state_dir: self.state.clone(),
            parallel: 4,
            wait_for_quota: true,
        }
    }

    async fn run_with(&self, opts: SyncOptions) -> Result<(Report, Vec<Action>), SyncError> {
        self.client.fetch().await.unwrap();
        let mut s = Syncer::open(self.client.clone(), &self.local, self.remote.clone(), opts)?;
        let mut seen = Vec::new();
        let r = s.run_once(&mut |a| seen.push(a.clone())).await?;
        Ok((r, seen))
    }

    async fn run(&self) -> Report {
        let (r, _) = self.run_with(self.opts()).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        r
    }

    fn write(&self, rel: &str, body: &[u8]) {
        let p = self.local.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.local.join(rel)).ok()
    }

    /// The remote folder as the other session sees it: path -> content.
    async fn remote_files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.other.fetch().await.unwrap();
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![(self.remote.clone(), String::new())];
        while let Some((h, rel)) = stack.pop() {
            for n in self.other.children(&h).unwrap() {
                let p = if rel.is_empty() {
                    n.name.clone()
                } else {
                    format!("{rel}/{}", n.name)
                };
                if n.kind.is_container() {
                    stack.push((n.handle.clone(), p));
                } else {
                    out.insert(p, self.other.download_to_vec(&n.handle).await.unwrap());
                }
            }
        }
        out
    }

    async fn remote_handle(&self, path: &str) -> NodeHandle {
        self.other.fetch().await.unwrap();
        let top = self.other.read_tree().path_of(&self.remote);
        self.other.resolve(&format!("{top}/{path}")).unwrap().handle
    }

    async fn put_remote(&self, path: &str, body: &[u8]) {
        self.other.fetch().await.unwrap();
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut parent = self.remote.clone();
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            let existing = self
                .other
                .children(&parent)
                .unwrap()
                .into_iter()
                .find(|n| n.name == part);
            parent = match existing {
                Some(n) => n.handle,
                None => self.other.mkdir(&parent, part).await.unwrap().handle,
            };
        }
        let old: Vec<NodeHandle> = self
            .other
            .children(&parent)
            .unwrap()
            .into_iter()
            .filter(|n| n.name == name)
            .map(|n| n.handle)
            .collect();
        self.other
            .upload(
                &parent,
                name,
                &mut &body[..],
                body.len() as u64,
                1_600_000_000,
                None,
            )
            .await
            .unwrap();
        for h in old {
            self.other.trash(&h).await.unwrap();
        }
    }

    fn debris(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let root = self.local.join(".debris");
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
                    out.push((rel, std::fs::read(e.path()).unwrap()));
                }
            }
        }
        out
    }
}

fn conflict_copies(files: impl IntoIterator<Item = String>, stem: &str) -> Vec<String> {
    files
        .into_iter()
        .filter(|f| f.starts_with(&format!("{stem} (conflict ")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_decision_table() {
    let env = Env::start().await;
    let p = Pair::new(&env, "table@example.com").await;
    for name in ["a", "b", "c", "d", "e"] {
        p.write(&format!("{name}.txt"), format!("{name} v1").as_bytes());
    }
    p.write("dir/inner.txt", b"inner");
    let first = p.run().await;
    assert_eq!(first.uploaded, 6);
    assert_eq!(first.mkdir_remote, 1);
    assert_eq!(p.remote_files().await.len(), 6);

    // Local: edit a, delete c, edit e, new f, new h. Remote: edit b, delete d, edit e
    // differently, new g, new h (same content), new i (different content from local i).
    p.write("a.txt", b"a v2 local");
    std::fs::remove_file(p.local.join("c.txt")).unwrap();
    p.write("e.txt", b"e local edit");
    p.write("f.txt", b"f new local");
    p.write("h.txt", b"same on both");
    p.write("i.txt", b"i local");
    p.put_remote("b.txt", b"b v2 remote").await;
    let d = p.remote_handle("d.txt").await;
    p.other.trash(&d).await.unwrap();
    p.put_remote("e.txt", b"e remote edit!").await;
    p.put_remote("g.txt", b"g new remote").await;
    p.put_remote("h.txt", b"same on both").await;
    p.put_remote("i.txt", b"i remote").await;

    let (r, acts) = p.run_with(p.opts()).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.uploaded, 2, "a, f: {r:?} {acts:?}");
    assert_eq!(r.downloaded, 2, "b, g: {r:?} {acts:?}");
    assert_eq!((r.deleted_remote, r.deleted_local), (1, 1), "{r:?}");
    assert_eq!(r.conflicts, 2, "{r:?}");
    assert_eq!(r.recorded, 1, "h: {r:?}");

    let remote = p.remote_files().await;
    assert_eq!(remote["a.txt"], b"a v2 local");
    assert_eq!(p.read("b.txt").unwrap(), b"b v2 remote");
    assert!(
        p.debris()
            .iter()
            .any(|(f, b)| f.ends_with("/b.txt") && b == b"b v1"),
        "the local file a download replaced is in debris"
    );
    assert!(
        !remote.contains_key("c.txt"),
        "deleted remotely (Rubbish Bin)"
    );
    assert!(p.read("d.txt").is_none(), "deleted locally");
    assert!(p
        .debris()
        .iter()
        .any(|(f, b)| f.ends_with("/d.txt") && b == b"d v1"));
    assert_eq!(remote["f.txt"], b"f new local");
    assert_eq!(p.read("g.txt").unwrap(), b"g new remote");
    assert_eq!(p.read("h.txt").unwrap(), b"same on both");
    // Conflicts: the remote version under the name on both sides, the local one as a
    // conflict copy on both sides.
    for (name, local_body, remote_body) in [
        ("e", &b"e local edit"[..], &b"e remote edit!"[..]),
        ("i", b"i local", b"i remote"),
    ] {
        let file = format!("{name}.txt");
        assert_eq!(p.read(&file).unwrap(), remote_body);
        assert_eq!(remote[&file], remote_body);
        let copies = conflict_copies(remote.keys().cloned(), name);
        assert_eq!(copies.len(), 1, "{remote:?}");
        assert_eq!(remote[&copies[0]], local_body);
        assert_eq!(p.read(&copies[0]).unwrap(), local_body);
    }
    // The rubbish bin has c (and the replaced versions).
    let rubbish = p.other.rubbish().unwrap().handle;
    assert!(p
        .other
        .children(&rubbish)
        .unwrap()
        .iter()
        .any(|n| n.name == "c.txt"));

    // Converged: nothing more to do, on either side.
    let again = p.run().await;
    assert_eq!(again, Report::default(), "second run did something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_on_both_sides_are_moves_not_transfers() {
    let env = Env::start().await;
    let p = Pair::new(&env, "moves@example.com").await;
    p.write("docs/a.txt", b"a");
    p.write("docs/deep/b.txt", b"b");
    p.write("c.txt", b"c");
    p.write("r.txt", b"r");
    p.write("rdir/x.txt", b"x");
    p.run().await;
    let handles = (
        p.remote_handle("docs/a.txt").await,
        p.remote_handle("c.txt").await,
    );
    let inode_r = std::fs::metadata(p.local.join("r.txt")).unwrap().ino();

    // Local: rename a folder and a file. Remote: rename a file, move a folder into another.
    std::fs::rename(p.local.join("docs"), p.local.join("papers")).unwrap();
    std::fs::rename(p.local.join("c.txt"), p.local.join("c2.txt")).unwrap();
    let r_h = p.remote_handle("r.txt").await;
    p.other.rename(&r_h, "r-renamed.txt").await.unwrap();
    let rdir = p.remote_handle("rdir").await;
    let new_parent = p.other.mkdir(&p.remote, "moved-here").await.unwrap().handle;
    p.other.move_to(&rdir, &new_parent).await.unwrap();

    let r = p.run().await;
    assert_eq!((r.uploaded, r.downloaded), (0, 0), "moves only: {r:?}");
    assert_eq!(r.moved_remote, 2, "{r:?}");
    assert_eq!(r.moved_local, 2, "{r:?}");
    // Same nodes remotely (not re-uploaded), same inodes locally (not re-downloaded).
    assert_eq!(p.remote_handle("papers/a.txt").await, handles.0);
    assert_eq!(p.remote_handle("c2.txt").await, handles.1);
    assert_eq!(
        std::fs::metadata(p.local.join("r-renamed.txt"))
            .unwrap()
            .ino(),
        inode_r
    );
    assert_eq!(p.read("moved-here/rdir/x.txt").unwrap(), b"x");
    assert_eq!(p.remote_files().await["papers/deep/b.txt"], b"b");
    assert_eq!(p.run().await, Report::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_delete_guard_dry_run_exclusions_and_settling() {
    let env = Env::start().await;
    let p = Pair::new(&env, "guards@example.com").await;
    p.write(".megaignore", b"+sync:.megaignore\n-:*.tmp\n-d:build\n");
    for i in 0..4 {
        p.write(&format!("f{i}"), b"x");
    }
    p.write("scratch.tmp", b"local only");
    p.write("build/out.o", b"local only");
    p.run().await;
    p.put_remote("remote.tmp", b"remote only").await;
    let remote = p.remote_files().await;
    assert!(remote.contains_key(".megaignore") && remote.contains_key("f3"));
    assert!(!remote.contains_key("scratch.tmp") && !remote.contains_key("build/out.o"));

    // Four local deletions against --max-delete 3: nothing happens.
    for i in 0..4 {
        std::fs::remove_file(p.local.join(format!("f{i}"))).unwrap();
    }
    let mut opts = p.opts();
    opts.max_delete = Some(3);
    match p.run_with(opts).await {
        Err(SyncError::TooManyDeletes { deletes: 4, max: 3 }) => {}
        other => panic!("guard did not stop the run: {other:?}"),
    }
    assert!(p.remote_files().await.contains_key("f0"));
    // --dry-run lists the plan and changes nothing.
    let mut opts = p.opts();
    opts.dry_run = true;
    let (_, shown) = p.run_with(opts).await.unwrap();
    assert_eq!(
        shown.iter().filter(|a| a.is_delete()).count(),
        4,
        "{shown:?}"
    );
    assert!(p.remote_files().await.contains_key("f0"));
    assert!(
        p.read("remote.tmp").is_none(),
        "excluded remote file not downloaded"
    );

    // A file still being written (modified within the settle time) waits.
    p.write("fresh.txt", b"being written");
    let mut opts = p.opts();
    opts.settle = Duration::from_secs(3600);
    opts.max_delete = Some(10);
    let (r, _) = p.run_with(opts).await.unwrap();
    assert_eq!(r.deferred, 1, "{r:?}");
    assert!(!p.remote_files().await.contains_key("fresh.txt"));
    let r = p.run().await;
    assert_eq!(r.uploaded, 1);
    assert!(p.remote_files().await.contains_key("fresh.txt"));
}

// ---- through the binary ----

fn megacmd(env: &Env, home: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("MEGA_API_URL", env.server.base_url())
        .env("MEGA_PASSWORD", PASSWORD);
    c
}

async fn run_bin(env: &Env, home: &Path, email: &str, args: &[&str]) -> std::process::Output {
    let mut c = megacmd(env, home, args);
    c.env("MEGA_EMAIL", email);
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || c.output().unwrap()),
    )
    .await
    .expect("megacmd timed out")
    .unwrap()
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_transfers_then_restart_converges() {
    let env = Env::start().await;
    let p = Pair::new(&env, "kill@example.com").await;
    let home = env.dir.path().join("kill-home");
    let local = p.local.display().to_string();
    let args = ["sync", "--two-way", "--settle", "0", &local, "mega:/synced"];
    let stats = env.server.stats();

    // Starts a run with slow transfers (every request delayed by `latency_ms`, downloads at
    // 4 MB/s) and kills it (SIGKILL) once `busy` says data moves.
    let kill_mid_transfer = |busy: fn(&mega_testserver::stats::Stats) -> bool, latency_ms| {
        let (env, home, args) = (&env, &home, &args);
        async move {
            env.server.faults().update(|f| {
                f.latency_ms = latency_ms;
                f.bandwidth_bps = 4_000_000;
            });
            let mut c = megacmd(env, home, args);
            c.env("MEGA_EMAIL", "kill@example.com");
            let mut child = c.spawn().unwrap();
            wait_for("a transfer in progress", 60, || busy(stats)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            child.kill().unwrap();
            child.wait().unwrap();
            env.server.faults().update(|f| {
                f.latency_ms = 0;
                f.bandwidth_bps = 0;
            });
        }
    };

    // An upload killed half way, then a restart.
    let big_up = data(12_000_000, 1);
    p.write("up.bin", &big_up);
    // 12 MB are 15 chunk requests, 4 at a time: about 2 s at 500 ms each.
    kill_mid_transfer(|s| s.uploads.now() > 0, 500).await;
    assert!(
        !p.remote_files().await.contains_key("up.bin"),
        "the kill came too late to test anything"
    );
    let out = run_bin(&env, &home, "kill@example.com", &args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A download killed half way: no partial file under the final name; then a restart.
    let big_down = data(12_000_000, 2);
    p.put_remote("down.bin", &big_down).await;
    kill_mid_transfer(|s| s.downloads.now() > 0, 150).await;
    assert!(
        p.read("down.bin").is_none(),
        "a partial download under the final name"
    );
    let out = run_bin(&env, &home, "kill@example.com", &args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let remote = p.remote_files().await;
    assert_eq!(remote.len(), 2, "no duplicates: {:?}", remote.keys());
    assert_eq!(remote["up.bin"], big_up);
    assert_eq!(remote["down.bin"], big_down);
    assert_eq!(p.read("down.bin").unwrap(), big_down);
    assert_eq!(p.read("up.bin").unwrap(), big_up);
    let leftovers: Vec<_> = std::fs::read_dir(&p.local)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".megasync-") || n.starts_with(".debris"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "partials or debris left: {leftovers:?}"
    );
    // A further run has nothing to do.
    let out = run_bin(&env, &home, "kill@example.com", &args).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0 uploaded, 0 downloaded, 0 moved, 0 mode(s) carried, 0 deleted"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_guard_exit_code_and_dry_run_output() {
    let env = Env::start().await;
    let p = Pair::new(&env, "cli@example.com").await;
    let home = env.dir.path().join("cli-home");
    p.write("a", b"1");
    p.write("b", b"2");
    let local = p.local.display().to_string();
    let base = ["sync", "--two-way", "--settle", "0", &local, "mega:/synced"];
    let out = run_bin(&env, &home, "cli@example.com", &base).await;
    assert!(out.status.success());
    std::fs::remove_file(p.local.join("a")).unwrap();
    std::fs::remove_file(p.local.join("b")).unwrap();
    let mut args = base.to_vec();
    args.extend(["--max-delete", "1"]);
    let out = run_bin(&env, &home, "cli@example.com", &args).await;
    assert_eq!(out.status.code(), Some(11));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--max-delete 1"), "{err}");
    let mut args = base.to_vec();
    args.push("--dry-run");
    let out = run_bin(&env, &home, "cli@example.com", &args).await;
    assert!(out.status.success());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("delete-remote a") && plan.contains("delete-remote b"),
        "{plan}"
    );
    assert_eq!(p.remote_files().await.len(), 2, "dry run changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_remote_and_local_changes_within_5_seconds() {
    let env = Env::start().await;
    let p = Pair::new(&env, "watch@example.com").await;
    let home = env.dir.path().join("watch-home");
    let local = p.local.display().to_string();
    let mut c = megacmd(
        &env,
        &home,
        &[
            "sync",
            "--two-way",
            "--watch",
            "--settle",
            "1",
            &local,
            "mega:/synced",
        ],
    );
    c.env("MEGA_EMAIL", "watch@example.com");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(c.spawn().unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;

    p.put_remote("from-remote.txt", b"remote").await;
    let path = p.local.join("from-remote.txt");
    wait_for("a remote change downloaded", 5, || {
        std::fs::read(&path).ok().as_deref() == Some(&b"remote"[..])
    })
    .await;

    p.write("from-local.txt", b"local");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if p.remote_files()
            .await
            .get("from-local.txt")
            .map(Vec::as_slice)
            == Some(&b"local"[..])
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a local change not uploaded within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The downloaded file was not uploaded back (echo), and nothing was duplicated.
    let remote = p.remote_files().await;
    assert_eq!(remote.len(), 2, "{:?}", remote.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_remote_names_sync_the_oldest() {
    let env = Env::start().await;
    let p = Pair::new(&env, "dup@example.com").await;
    p.other
        .upload(&p.remote, "dup.txt", &mut &b"oldest"[..], 6, 1, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later creation time
    p.other
        .upload(&p.remote, "dup.txt", &mut &b"newer!"[..], 6, 2, None)
        .await
        .unwrap();
    p.run().await;
    assert_eq!(p.read("dup.txt").unwrap(), b"oldest");
    assert_eq!(p.run().await, Report::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_failing_pass_and_recovers() {
    let env = Env::start().await;
    let p = Pair::new(&env, "resilient@example.com").await;
    p.client.fetch().await.unwrap();
    let mut s = Syncer::open(p.client.clone(), &p.local, p.remote.clone(), p.opts()).unwrap();
    let (tx, mut passes) = tokio::sync::mpsc::unbounded_channel::<Report>();
    let task = tokio::spawn(async move {
        let mut done = |r: &Report| {
            let _ = tx.send(r.clone());
        };
        s.watch(&mut |_| {}, &mut done).await
    });
    tokio::time::timeout(Duration::from_secs(10), passes.recv())
        .await
        .unwrap()
        .unwrap();
    // An exclusion file that cannot be parsed makes passes fail; the watch keeps going.
    p.write(".megaignore", b"-:*.tmp\n*.bak\n");
    p.put_remote("later.txt", b"arrives anyway").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished(), "the watch stopped on a failed pass");
    assert!(
        !p.local.join("later.txt").exists(),
        "the pass should have failed on the malformed exclusion file"
    );
    p.write(".megaignore", b"-:*.tmp\n-:*.bak\n");
    let path = p.local.join("later.txt");
    wait_for("recovered after the failure", 10, || path.exists()).await;
    task.abort();
}

/// A one-shot run right after files were written waits for them to settle and syncs them;
/// a file that keeps changing past `--settle-wait` makes the run exit non-zero naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_run_waits_for_files_being_written() {
    let env = Env::start().await;
    let p = Pair::new(&env, "settle@example.com").await;
    let home = env.dir.path().join("settle-home");
    p.write("fresh1.txt", b"just written");
    p.write("fresh2.txt", b"also just written");
    let local = p.local.display().to_string();
    let args = ["sync", "--two-way", "--settle", "1", &local, "mega:/synced"];
    let out = run_bin(&env, &home, "settle@example.com", &args).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("2 uploaded") && err.contains("0 waiting"),
        "{err}"
    );
    let remote = p.remote_files().await;
    assert_eq!(remote["fresh1.txt"], b"just written");
    assert_eq!(remote["fresh2.txt"], b"also just written");

    // A file rewritten every 200 ms never settles: after 2 s the run gives up, saying so.
    let busy = p.local.join("busy.log");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (busy, stop) = (busy.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                std::fs::write(&busy, n.to_string()).unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let args = [
        "sync",
        "--two-way",
        "--settle",
        "1",
        "--settle-wait",
        "2",
        &local,
        "mega:/synced",
    ];
    let out = run_bin(&env, &home, "settle@example.com", &args).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("still being written") && err.contains("busy.log"),
        "{err}"
    );
    assert!(!p.remote_files().await.contains_key("busy.log"));
}

/// MEGA's `.megaignore` as MEGA's apps apply it, on both sides of a pair: a pair without one
/// gets the default file MEGA's desktop app writes (kept local), which keeps dotfiles, lock
/// files and temporary files on their side; a subfolder's file adds rules for its subtree
/// (nearest folder first, `N` only there, its own size filter) and is synced itself with
/// `+sync:.megaignore`; a malformed line stops the run naming the file and the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megaignore_as_megas_apps_apply_it() {
    let env = Env::start().await;
    let p = Pair::new(&env, "megaignore@example.com").await;
    for f in [
        "notes.txt",
        ".hidden",
        "~lock.docx",
        "draft.tmp",
        "Thumbs.db",
        "code/.git/HEAD",
        "code/main.rs",
        "art/.keep",
        "art/raw/x",
        "art/sub/raw/y",
        "art/small.bin",
    ] {
        p.write(f, b"local");
    }
    p.write("art/big.bin", &[7; 2000]);
    p.write("big.bin", &[7; 2000]);
    p.write(
        "art/.megaignore",
        b"+sync:.megaignore\n+:.keep\n-N:raw\nexclude-larger:1k\n",
    );
    for f in [".config", "remote.tmp", "plain.txt"] {
        p.put_remote(f, b"remote").await;
    }

    // A dry run writes nothing, not even the default file.
    let mut opts = p.opts();
    opts.dry_run = true;
    p.run_with(opts).await.unwrap();
    assert!(p.read(".megaignore").is_none());

    p.run().await;
    assert_eq!(
        p.read(".megaignore").unwrap(),
        mega_mount::sync::ignore::DEFAULT_FILE.as_bytes(),
        "the default file MEGA's apps write"
    );
    let remote = p.remote_files().await;
    let names: Vec<&str> = remote.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            ".config",
            "art/.keep",
            "art/.megaignore",
            "art/small.bin",
            "art/sub/raw/y",
            "big.bin",
            "code/main.rs",
            "notes.txt",
            "plain.txt",
            "remote.tmp",
        ]
    );
    assert_eq!(p.read("plain.txt").unwrap(), b"remote");
    assert!(p.read(".config").is_none() && p.read("remote.tmp").is_none());

    // A malformed line: the run stops before doing anything, naming the file and line.
    p.write("code/.megaignore", b"-:*.o\nbuild/\n");
    p.write("code/new.rs", b"new");
    let home = env.dir.path().join("megaignore-home");
    let local = p.local.display().to_string();
    let args = ["sync", "--two-way", &local, "mega:/synced"];
    let out = run_bin(&env, &home, "megaignore@example.com", &args).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{err}");
    assert!(err.contains("code/.megaignore, line 2"), "{err}");
    assert!(!p.remote_files().await.contains_key("code/new.rs"));
    p.write("code/.megaignore", b"-:*.o\n-d:build\n");
    let out = run_bin(&env, &home, "megaignore@example.com", &args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remote = p.remote_files().await;
    assert!(remote.contains_key("code/new.rs") && !remote.contains_key("code/.megaignore"));
}

/// `megacmd backup` as MEGA's apps make backups: the Vault's "My backups/<device>/<name>",
/// registered (type 5, this device, this path) and beating; local edits keep versions, local
/// deletions and intruding remote files go to SyncDebris; the Vault refuses ordinary
/// writes; a pause and a removal asked from a second session are honoured at the next pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_as_megas_apps_make_them() {
    use mega_mount::client::backups::{self, beat, state, BackupKind};
    use mega_mount::sync::backup::Backup;
    use mega_mount::sync::registry::request_state;
    let env = Env::start().await;
    let other = env.account("backup@example.com").await;
    let client = Arc::new(env.login("backup@example.com").await);
    let local = env.dir.path().join("Documents");
    for (f, body) in [
        ("a.txt", &b"first"[..]),
        ("sub/b.txt", b"second"),
        (".hidden", b"not by default"),
        ("gone.txt", b"to be deleted"),
    ] {
        let p = local.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let mut b = Backup::create(client.clone(), &local, Some("Docs"))
        .await
        .unwrap();
    let r = b.run_once().await.unwrap();
    assert_eq!((r.uploaded, r.folders), (3, 1), "{r:?}");

    // Registered as MEGA's apps register, seen from another session.
    let records = other.backup_records().await.unwrap();
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    let canonical = local.canonicalize().unwrap().display().to_string();
    assert_eq!(rec.kind, BackupKind::Backup);
    assert_eq!(
        rec.device.as_deref(),
        Some(backups::device_id().unwrap().as_str())
    );
    assert_eq!(rec.local.as_deref(), Some(canonical.as_str()));
    assert_eq!(rec.name.as_deref(), Some("Docs"));
    assert_eq!(rec.state, i64::from(state::ACTIVE));
    let hb = rec.heartbeat.as_ref().expect("a heartbeat");
    assert_eq!(
        (hb.status, hb.progress),
        (i64::from(beat::UP_TO_DATE), Some(100))
    );
    let names = other.device_names().await.unwrap();
    assert!(names.iter().any(|(d, _)| Some(d) == rec.device.as_ref()));

    // In the Vault: My backups (named by ^!bak) / device folder (dev-id) / Docs.
    other.fetch().await.unwrap();
    let my = other
        .my_backups()
        .await
        .unwrap()
        .expect("^!bak names My backups");
    assert_eq!(other.path_of(&my.handle), "//Inbox/My backups");
    let dev = &other.children(&my.handle).unwrap()[0];
    assert_eq!(
        dev.attrs().unwrap()["dev-id"].as_str(),
        rec.device.as_deref()
    );
    let root = NodeHandle(rec.root.clone().unwrap());
    assert_eq!(
        other.path_of(&root),
        format!("{}/Docs", other.path_of(&dev.handle))
    );
    let in_root = |c: &Client, name: &str| {
        c.children(&root)
            .unwrap()
            .into_iter()
            .find(|n| n.name == name)
    };
    assert!(
        in_root(&other, ".hidden").is_none(),
        "the default .megaignore applies"
    );
    let a = in_root(&other, "a.txt").unwrap();
    assert_eq!(other.download_to_vec(&a.handle).await.unwrap(), b"first");

    // Ordinary writes into the Vault are refused by the server.
    assert!(other.mkdir(&root, "x").await.is_err(), "mkdir in the Vault");
    assert!(
        other.trash(&a.handle).await.is_err(),
        "trash from the Vault"
    );
    assert!(
        other.rename(&a.handle, "b").await.is_err(),
        "rename in the Vault"
    );
    assert!(
        other.delete(&a.handle).await.is_err(),
        "delete in the Vault"
    );

    // Local edit and deletion; a remote intruder (a client allowed to write the Vault).
    std::fs::write(local.join("a.txt"), b"edited").unwrap();
    std::fs::remove_file(local.join("gone.txt")).unwrap();
    let intruder = Client::login(env.api_config(), "backup@example.com", PASSWORD, None)
        .await
        .unwrap();
    intruder.allow_vault_writes();
    intruder
        .upload(&root, "intruder.txt", &mut &b"x"[..], 1, 0, None)
        .await
        .unwrap();
    client.fetch().await.unwrap();
    let r = b.run_once().await.unwrap();
    assert_eq!((r.uploaded, r.removed), (1, 2), "{r:?}");
    assert!(!local.join("intruder.txt").exists(), "never pulled down");
    other.fetch().await.unwrap();
    let a = in_root(&other, "a.txt").unwrap();
    assert_eq!(other.download_to_vec(&a.handle).await.unwrap(), b"edited");
    assert_eq!(
        other.read_tree().versions(&a.handle).len(),
        1,
        "the old one is a version"
    );
    assert!(in_root(&other, "gone.txt").is_none() && in_root(&other, "intruder.txt").is_none());
    let bin = other.rubbish().unwrap().handle;
    let debris = other
        .read_tree()
        .child_by_name(&bin, "SyncDebris")
        .unwrap()
        .clone();
    let days = other.children(&debris.handle).unwrap();
    let moved: Vec<String> = other
        .children(&days[0].handle)
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(moved.contains(&"gone.txt".to_string()) && moved.contains(&"intruder.txt".to_string()));

    // Paused from the other session: nothing is uploaded until it is resumed.
    request_state(&other, &rec.id, state::PAUSED).await.unwrap();
    std::fs::write(local.join("new.txt"), b"new").unwrap();
    client.fetch().await.unwrap();
    let r = b.run_once().await.unwrap();
    assert!(r.paused && r.uploaded == 0, "{r:?}");
    let rec2 = other.backup_records().await.unwrap().remove(0);
    assert_eq!(rec2.state, i64::from(state::PAUSED));
    other.fetch().await.unwrap();
    let sds = other
        .read_tree()
        .get(&root)
        .unwrap()
        .attrs()
        .unwrap()
        .get("sds")
        .cloned();
    assert!(sds.is_none(), "the request is acknowledged: {sds:?}");
    request_state(&other, &rec.id, state::ACTIVE).await.unwrap();
    client.fetch().await.unwrap();
    let r = b.run_once().await.unwrap();
    assert_eq!(r.uploaded, 1, "{r:?}");

    // Removed from the other session: the next pass ends the backup; the folder stays.
    request_state(&other, &rec.id, state::DELETED)
        .await
        .unwrap();
    client.fetch().await.unwrap();
    let r = b.run_once().await.unwrap();
    assert!(r.ended, "{r:?}");
    assert!(other.backup_records().await.unwrap().is_empty());
    other.fetch().await.unwrap();
    assert!(
        other.read_tree().get(&root).is_some(),
        "a stopped backup keeps its folder"
    );
}

/// A two-way sync registers with the Backup Centre on its first run (type two-way, its local
/// path, its remote folder) and beats; a pause asked from another session stops it until
/// resumed, a removal ends it, and the next run registers anew; a sync of the whole Cloud
/// Drive takes its requests from `*!sds`; `--remove` unregisters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_syncs_are_registered_and_follow_other_devices() {
    use mega_mount::client::backups::{beat, state, BackupKind};
    use mega_mount::sync::registry::request_state;
    let env = Env::start().await;
    let p = Pair::new(&env, "registered@example.com").await;
    p.write("a.txt", b"a");
    p.run().await;
    let records = p.other.backup_records().await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let rec = &records[0];
    let path = p.local.canonicalize().unwrap().display().to_string();
    assert_eq!(rec.kind, BackupKind::TwoWay);
    assert_eq!(rec.local.as_deref(), Some(path.as_str()));
    assert_eq!(
        rec.name.as_deref(),
        Some(path.as_str()),
        "named by its path"
    );
    assert_eq!(rec.root.as_deref(), Some(p.remote.0.as_str()));
    assert_eq!(
        rec.heartbeat.as_ref().map(|h| h.status),
        Some(i64::from(beat::UP_TO_DATE))
    );

    // Paused from elsewhere: nothing moves until it is resumed.
    request_state(&p.other, &rec.id, state::PAUSED)
        .await
        .unwrap();
    p.write("b.txt", b"b");
    let r = p.run().await;
    assert!(r.paused && r.uploaded == 0, "{r:?}");
    assert!(!p.remote_files().await.contains_key("b.txt"));
    request_state(&p.other, &rec.id, state::ACTIVE)
        .await
        .unwrap();
    let r = p.run().await;
    assert_eq!(r.uploaded, 1, "{r:?}");

    // Removed from elsewhere: the run ends with that error; the next registers anew.
    request_state(&p.other, &rec.id, state::DELETED)
        .await
        .unwrap();
    match p.run_with(p.opts()).await {
        Err(SyncError::Removed) => {}
        other => panic!("expected the removal: {other:?}"),
    }
    assert!(p.other.backup_records().await.unwrap().is_empty());
    p.run().await;
    let again = p.other.backup_records().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, rec.id);

    // A sync of the whole Cloud Drive: its requests live in *!sds.
    let whole = env.dir.path().join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    let root = p.client.root().unwrap().handle;
    let mut opts = p.opts();
    opts.state_dir = env.dir.path().join("whole-state");
    let mut s = Syncer::open(p.client.clone(), &whole, root.clone(), opts.clone()).unwrap();
    s.run_once(&mut |_| {}).await.unwrap();
    let id = s.registration().unwrap().to_string();
    request_state(&p.other, &id, state::PAUSED).await.unwrap();
    assert_eq!(
        p.other.desired_states_of_account().await.unwrap(),
        Some(vec![(id.clone(), "3".to_string())])
    );
    p.client.fetch().await.unwrap();
    let r = s.run_once(&mut |_| {}).await.unwrap();
    assert!(r.paused, "{r:?}");
    assert_eq!(
        p.other.desired_states_of_account().await.unwrap(),
        Some(vec![]),
        "acknowledged"
    );

    // --remove unregisters.
    s.remove().await.unwrap();
    let left: Vec<String> = p
        .other
        .backup_records()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(!left.contains(&id), "{left:?}");
}

/// A remote file whose fingerprint was written by an SDK build with the 32-bit sparse-CRC
/// bug (files over 33.8 MB) is the same file as the local one with the same content and
/// mtime: recorded as in sync, not a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_32_bit_fingerprint_counts_as_the_same_file() {
    use mega_mount::crypto::fingerprint::{legacy_crcs, Fingerprint, LEGACY_OVERFLOW_MIN_SIZE};
    let env = Env::start().await;
    let p = Pair::new(&env, "legacycrc@example.com").await;
    let size = LEGACY_OVERFLOW_MIN_SIZE as usize + 5_000_000;
    let body = data(size, 9);
    p.write("big.bin", &body);
    let mtime = std::fs::metadata(p.local.join("big.bin")).unwrap().mtime();
    p.put_remote("big.bin", &body).await;
    let h = p.remote_handle("big.bin").await;
    let legacy = legacy_crcs(&mut body.as_slice(), size as u64).unwrap()[0];
    assert_ne!(legacy, Fingerprint::of_bytes(&body, 0).crc);
    p.other
        .set_fingerprint(&h, Fingerprint { crc: legacy, mtime })
        .await
        .unwrap();
    let r = p.run().await;
    assert_eq!((r.conflicts, r.uploaded, r.recorded), (0, 0, 1), "{r:?}");
}

/// `backup --watch`: a local change is uploaded within seconds, and a removal asked from
/// another session (through the event channel) ends the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_backup_follows_changes_and_ends_when_removed() {
    use mega_mount::client::backups::state;
    use mega_mount::sync::backup::Backup;
    use mega_mount::sync::registry::request_state;
    let env = Env::start().await;
    let other = env.account("watchbackup@example.com").await;
    let client = Arc::new(env.login("watchbackup@example.com").await);
    let local = env.dir.path().join("Watched");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("a.txt"), b"a").unwrap();
    let mut b = Backup::create(client.clone(), &local, None).await.unwrap();
    let (id, root) = (b.id().to_string(), b.root().clone());
    let task = tokio::spawn(async move { b.watch(&mut |_| {}).await });
    let has = |name: &'static str| {
        let (other, root) = (&other, root.clone());
        async move {
            other.fetch().await.unwrap();
            other
                .children(&root)
                .unwrap()
                .iter()
                .any(|n| n.name == name)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !has("a.txt").await {
        assert!(tokio::time::Instant::now() < deadline, "first pass");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(local.join("b.txt"), b"b").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !has("b.txt").await {
        assert!(tokio::time::Instant::now() < deadline, "the local change");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    request_state(&other, &id, state::DELETED).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the watch ends after the removal")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
}

/// Issue 21 §1: over MEGA's transfer quota a two-way sync holds its downloads back until the
/// quota comes back, uploads meanwhile, and finishes; told not to wait, it uploads and
/// reports the downloads as failed with the quota error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_transfer_quota_downloads_wait_and_uploads_go_on() {
    let env = Env::start_with(|cfg| {
        cfg.limits.transfer_quota = 3 << 20;
        cfg.limits.transfer_bucket = Duration::from_secs(1);
    })
    .await;
    let p = Pair::new(&env, "syncquota@example.com").await;
    // Downloads resume where the quota stopped them (as megacmd's client does): without it,
    // a file larger than what a window allows would start over every time.
    p.client
        .keep_transfer_state(&env.dir.path().join("transfers-1"))
        .unwrap();
    p.put_remote("one.bin", &data(4 << 20, 1)).await;
    p.put_remote("two.bin", &data(4 << 20, 2)).await;
    p.write("up.bin", &data(1 << 20, 3));
    let t = std::time::Instant::now();
    let (r, _) = p
        .run_with(SyncOptions {
            parallel: 1,
            ..p.opts()
        })
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!((r.downloaded, r.uploaded), (2, 1), "{r:?}");
    assert!(t.elapsed() >= Duration::from_secs(1), "it waited");
    assert!(p.read("one.bin").unwrap() == data(4 << 20, 1));
    assert!(p.read("two.bin").unwrap() == data(4 << 20, 2));
    // (Not downloaded to check: that would meet the quota too.)
    let up = p.remote_handle("up.bin").await;
    assert_eq!(p.other.node(&up).unwrap().size, 1 << 20);

    // Not waiting: the upload goes, the download fails with the quota.
    let q = Pair::new(&env, "syncquota2@example.com").await;
    q.client
        .keep_transfer_state(&env.dir.path().join("transfers-2"))
        .unwrap();
    q.put_remote("three.bin", &data(4 << 20, 4)).await;
    q.put_remote("four.bin", &data(4 << 20, 5)).await;
    q.write("up2.bin", &data(1 << 20, 6));
    let (r, _) = q
        .run_with(SyncOptions {
            parallel: 1,
            wait_for_quota: false,
            ..q.opts()
        })
        .await
        .unwrap();
    assert_eq!(r.uploaded, 1, "{r:?}");
    assert!(
        r.errors.iter().any(|e| e.contains("transfer quota")),
        "{:?}",
        r.errors
    );
}

/// POSIX metadata in two-way sync (issue 20 §3): a local executable and a local symbolic link
/// reach MEGA with their mode and as a link; a link and an executable made by another session
/// come down as a link and with their mode; the next run has nothing to do (links compare
/// by their own size and mtime, not their target's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_and_symbolic_links_sync_both_ways() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::start().await;
    let p = Pair::new(&env, "sx@example.com").await;
    p.write("run.sh", b"#!/bin/sh\n");
    std::fs::set_permissions(
        p.local.join("run.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::symlink("run.sh", p.local.join("up-link")).unwrap();
    // `-s` rules of .megaignore apply to links (and not to files).
    p.write(".megaignore", b"-s:skip*\n");
    std::os::unix::fs::symlink("run.sh", p.local.join("skip-link")).unwrap();
    p.write("skip-file", b"kept");
    let r = p.run().await;
    assert_eq!(r.uploaded, 3, "{r:?}");
    assert!(p.remote_files().await.contains_key("skip-file"));
    p.other.fetch().await.unwrap();
    let script = p.remote_handle("run.sh").await;
    let link = p.remote_handle("up-link").await;
    let node = |h: &NodeHandle| p.other.node(h).unwrap();
    assert_eq!(node(&script).mode, Some(0o100_750));
    assert!(node(&link).is_symlink());
    assert_eq!(p.other.read_link(&link).await.unwrap(), b"run.sh");

    let target = |name: &'static str| mega_mount::client::Target {
        parent: &p.remote,
        name,
        replaces: None,
        mode: None,
    };
    p.other
        .symlink(target("down-link"), b"../elsewhere", 1_600_000_000)
        .await
        .unwrap();
    let exe = mega_mount::client::Target {
        mode: Some(0o100_700),
        ..target("tool")
    };
    p.other
        .upload_to(exe, &mut &b"bin"[..], 3, 1_600_000_000, None)
        .await
        .unwrap();
    let r = p.run().await;
    assert_eq!(r.downloaded, 2, "{r:?}");
    let down = p.local.join("down-link");
    assert!(std::fs::symlink_metadata(&down).unwrap().is_symlink());
    assert_eq!(
        std::fs::read_link(&down).unwrap(),
        Path::new("../elsewhere")
    );
    let tool = std::fs::metadata(p.local.join("tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o700);

    let r = p.run().await;
    assert_eq!((r.uploaded, r.downloaded, r.modes), (0, 0, 0), "{r:?}");

    // A chmod alone, on either side, is carried across (nothing transferred).
    std::fs::set_permissions(
        p.local.join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let tool = p.remote_handle("tool").await;
    p.other.set_mode(&tool, 0o750).await.unwrap();
    let r = p.run().await;
    assert_eq!((r.uploaded, r.downloaded, r.modes), (0, 0, 2), "{r:?}");
    p.other.fetch().await.unwrap();
    assert_eq!(p.other.node(&script).unwrap().mode, Some(0o100_755));
    let tool = std::fs::metadata(p.local.join("tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o750);
    let r = p.run().await;
    assert_eq!(r.modes, 0, "{r:?}");
}

/// A download never writes through a symbolic link (issue 20 §3: links are synced now): a
/// local link where the remote has a folder is a conflict (the link is kept under a conflict
/// name and uploaded as a link), the folder comes down as a folder, and nothing lands where
/// the link pointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_never_goes_through_a_local_link() {
    let env = Env::start().await;
    let p = Pair::new(&env, "nolink@example.com").await;
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    p.put_remote("docs/inside.txt", b"remote").await;
    std::os::unix::fs::symlink(&outside, p.local.join("docs")).unwrap();
    let r = p.run().await;
    assert_eq!((r.conflicts, r.downloaded), (1, 1), "{r:?}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    let docs = std::fs::symlink_metadata(p.local.join("docs")).unwrap();
    assert!(docs.is_dir());
    assert_eq!(p.read("docs/inside.txt").unwrap(), b"remote");
}
