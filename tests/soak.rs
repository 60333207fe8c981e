//! The soak (`scripts/soak.sh MINUTES`; ignored by `cargo test`): a mount, megacmd and a
//! second account that shares a folder with the first work at once for `SOAK_MINUTES`, while
//! the test server drops connections, answers 5xx, is restarted, and the mount daemon is
//! killed with SIGKILL and started again. Then a checker confirms that every write a program
//! was told succeeded is on the server with its content (or with the content of a later
//! attempt whose outcome the program never learnt), that every read that returned data
//! returned the right data, and that no two uploads share a keystream. The figures it prints
//! go to `doc/RELIABILITY.md`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::megacmd::Cmd;
use common::mount::Mount;
use common::{data, Env};
use mega_mount::client::{OldVersions, Target};
use mega_mount::tree::Access;
use mega_testserver::FaultConfig;

/// What a path may hold on the server: the last content acknowledged, and the contents of
/// later attempts whose outcome was not learnt (a failed close may have committed).
#[derive(Default)]
struct Ledger {
    paths: BTreeMap<String, (Option<u64>, BTreeSet<u64>)>,
    /// Every seed ever tried at a path (what a lagging reader may still see).
    history: BTreeMap<String, BTreeSet<u64>>,
}

impl Ledger {
    fn attempt(&mut self, path: &str, seed: u64) {
        self.paths.entry(path.into()).or_default().1.insert(seed);
        self.history.entry(path.into()).or_default().insert(seed);
    }
    fn ever(&self, path: &str) -> BTreeSet<u64> {
        self.history.get(path).cloned().unwrap_or_default()
    }
    fn acked(&mut self, path: &str, seed: u64) {
        let e = self.paths.entry(path.into()).or_default();
        e.0 = Some(seed);
        e.1.clear();
    }
    /// Seeds a read of `path` may return.
    fn allowed(&self, path: &str) -> BTreeSet<u64> {
        self.paths
            .get(path)
            .map(|(a, t)| t.iter().copied().chain(*a).collect())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Figures {
    ops: AtomicU64,
    failed_ops: AtomicU64,
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
    faults: AtomicU64,
    server_restarts: AtomicU64,
    mount_kills: AtomicU64,
    unverified: AtomicU64,
}

/// The length of the content written for a seed: 0 to ~3 MiB.
fn content_len(seed: u64) -> usize {
    match seed % 7 {
        0 => 0,
        1 => 1_000,
        2 => 131_072,
        3 => 3_000_000,
        _ => (seed % 1_500_000) as usize,
    }
}

/// The content written for a seed.
fn content(seed: u64) -> Vec<u8> {
    data(content_len(seed), (seed % 251) as u8)
}

/// Whether `got` is the content of one of `seeds`.
fn is_one_of(got: &[u8], seeds: &BTreeSet<u64>) -> bool {
    seeds
        .iter()
        .any(|s| content_len(*s) == got.len() && content(*s) == got)
}

/// A blocking file operation with a timeout: an error instead of a panic (the mount may be
/// dead, or restarting, at any moment).
async fn fs_op<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::time::timeout(Duration::from_secs(120), tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        _ => Err(std::io::Error::other("timed out")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the soak: run by scripts/soak.sh"]
async fn soak() {
    let minutes: f64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut env = Env::start().await;
    let alice = env.account("alice@example.com").await;
    let bob = Arc::new(env.account("bob@example.com").await);
    common::befriend(&bob, "bob@example.com", &alice, "alice@example.com").await;
    let root = bob.root().unwrap().handle;
    let team = bob.mkdir(&root, "Team").await.unwrap().handle;
    bob.share(&team, "alice@example.com", Access::ReadWrite)
        .await
        .unwrap();
    let aroot = alice.root().unwrap().handle;
    alice.mkdir(&aroot, "cli").await.unwrap();
    drop(alice);

    let home = env.dir.path().join("soak-mount-home");
    let mount = Arc::new(RwLock::new(Some(Mount::start_in(
        &env,
        "alice@example.com",
        &home,
        &[],
        true,
    ))));
    let path_of = {
        let mount = mount.clone();
        move |rel: &str| -> Option<PathBuf> { mount.read().unwrap().as_ref().map(|m| m.path(rel)) }
    };
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let figures = Arc::new(Figures::default());
    let next_seed = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();

    // The mount: new files and overwrites, then reads of what was acknowledged.
    for w in 0..2 {
        let (ledger, figures, seeds, stop, path_of) = (
            ledger.clone(),
            figures.clone(),
            next_seed.clone(),
            stop.clone(),
            path_of.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut mine: Vec<String> = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let seed = seeds.fetch_add(1, Ordering::Relaxed);
                let rel = if !mine.is_empty() && seed % 3 == 0 {
                    mine[(seed as usize / 3) % mine.len()].clone()
                } else {
                    format!("m{w}-{n}.bin")
                };
                let Some(p) = path_of(&rel) else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                ledger.lock().unwrap().attempt(&rel, seed);
                let body = content(seed);
                let len = body.len() as u64;
                figures.ops.fetch_add(1, Ordering::Relaxed);
                let written = fs_op(move || {
                    let mut f = std::fs::File::create(&p)?;
                    std::io::Write::write_all(&mut f, &body)?;
                    f.sync_all()
                })
                .await;
                match written {
                    Ok(()) => {
                        ledger.lock().unwrap().acked(&rel, seed);
                        figures.bytes_written.fetch_add(len, Ordering::Relaxed);
                        if !mine.contains(&rel) {
                            mine.push(rel.clone());
                        }
                    }
                    Err(_) => {
                        figures.failed_ops.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                // Read back one acknowledged file.
                if let Some(rel) = mine.get((seed as usize * 7) % mine.len().max(1)).cloned() {
                    let Some(p) = path_of(&rel) else { continue };
                    let allowed = ledger.lock().unwrap().allowed(&rel);
                    figures.ops.fetch_add(1, Ordering::Relaxed);
                    match fs_op(move || std::fs::read(p)).await {
                        Ok(got) => {
                            figures
                                .bytes_read
                                .fetch_add(got.len() as u64, Ordering::Relaxed);
                            if !is_one_of(&got, &allowed) {
                                eprintln!(
                                    "SOAK: {rel}: a read returned bytes that were never written"
                                );
                                figures.unverified.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            figures.failed_ops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }

    // megacmd: puts (new and --force) and gets, compared.
    {
        let (ledger, figures, seeds, stop) = (
            ledger.clone(),
            figures.clone(),
            next_seed.clone(),
            stop.clone(),
        );
        let cmd = Cmd::new(&env, "alice@example.com");
        let (home, url) = (cmd.home.clone(), env.server.base_url().to_string());
        let local = env.dir.path().join("soak-cli");
        std::fs::create_dir_all(&local).unwrap();
        workers.push(tokio::spawn(async move {
            let run = |args: Vec<String>| {
                let (home, url) = (home.clone(), url.clone());
                async move {
                    let mut c = tokio::process::Command::new(common::megacmd::BIN);
                    c.args(&args)
                        .env_clear()
                        .env("PATH", std::env::var("PATH").unwrap_or_default())
                        .env("HOME", &home)
                        .env("TMPDIR", home.join("tmp"))
                        .env("XDG_CONFIG_HOME", home.join("config"))
                        .env("MEGA_API_URL", url)
                        .env("MEGA_EMAIL", "alice@example.com")
                        .env("MEGA_PASSWORD", common::PASSWORD)
                        .kill_on_drop(true);
                    std::fs::create_dir_all(home.join("tmp")).ok();
                    tokio::time::timeout(Duration::from_secs(180), c.output())
                        .await
                        .ok()
                        .and_then(|o| o.ok())
                        .is_some_and(|o| o.status.success())
                }
            };
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let seed = seeds.fetch_add(1, Ordering::Relaxed);
                let name = format!("c{}.bin", n % 8);
                let rel = format!("cli/{name}");
                let src = local.join(&name);
                std::fs::write(&src, content(seed)).unwrap();
                ledger.lock().unwrap().attempt(&rel, seed);
                figures.ops.fetch_add(1, Ordering::Relaxed);
                let put = vec![
                    "put".into(),
                    "--force".into(),
                    src.display().to_string(),
                    "mega:/cli/".into(),
                ];
                if run(put).await {
                    ledger.lock().unwrap().acked(&rel, seed);
                    figures
                        .bytes_written
                        .fetch_add(content(seed).len() as u64, Ordering::Relaxed);
                } else {
                    figures.failed_ops.fetch_add(1, Ordering::Relaxed);
                }
                let back = local.join(format!("back-{name}"));
                let _ = std::fs::remove_file(&back);
                let allowed = ledger.lock().unwrap().allowed(&rel);
                figures.ops.fetch_add(1, Ordering::Relaxed);
                let get = vec![
                    "get".into(),
                    format!("mega:/{rel}"),
                    back.display().to_string(),
                ];
                if run(get).await {
                    let got = std::fs::read(&back).unwrap_or_default();
                    figures
                        .bytes_read
                        .fetch_add(got.len() as u64, Ordering::Relaxed);
                    if !is_one_of(&got, &allowed) {
                        eprintln!("SOAK: {rel}: megacmd get saved bytes that were never written");
                        figures.unverified.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    figures.failed_ops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // bob writes into the folder he shares with alice; alice's mount reads it.
    {
        let (ledger, figures, seeds, stop, path_of, bob, team) = (
            ledger.clone(),
            figures.clone(),
            next_seed.clone(),
            stop.clone(),
            path_of.clone(),
            bob.clone(),
            team.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let seed = seeds.fetch_add(1, Ordering::Relaxed);
                let name = format!("b{}.bin", n % 6);
                let rel = format!("Team/{name}");
                let body = content(seed);
                ledger.lock().unwrap().attempt(&rel, seed);
                figures.ops.fetch_add(1, Ordering::Relaxed);
                let old = bob.read_tree().child_by_name(&team, &name).cloned();
                let target = Target {
                    parent: &team,
                    name: &name,
                    replaces: old.as_ref().map(|o| (&o.handle, OldVersions::Keep)),
                    mode: None,
                };
                let mut r = &body[..];
                match bob
                    .upload_to(target, &mut r, body.len() as u64, 1_700_000_000, None)
                    .await
                {
                    Ok(_) => {
                        ledger.lock().unwrap().acked(&rel, seed);
                        figures
                            .bytes_written
                            .fetch_add(body.len() as u64, Ordering::Relaxed);
                    }
                    Err(_) => {
                        figures.failed_ops.fetch_add(1, Ordering::Relaxed);
                        let _ = bob.fetch().await;
                    }
                }
                let shared = format!("Shared with me/bob@example.com/{rel}");
                let Some(p) = path_of(&shared) else { continue };
                // What alice's mount shows may lag behind bob's last upload: any content bob
                // ever tried to write there is fine, nothing else.
                let ever = ledger.lock().unwrap().ever(&rel);
                figures.ops.fetch_add(1, Ordering::Relaxed);
                match fs_op(move || std::fs::read(p)).await {
                    Ok(got) => {
                        figures
                            .bytes_read
                            .fetch_add(got.len() as u64, Ordering::Relaxed);
                        if !is_one_of(&got, &ever) {
                            eprintln!("SOAK: {rel}: the mount read bytes that were never written");
                            figures.unverified.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        figures.failed_ops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }));
    }

    // Chaos: faults, server restarts, the daemon killed and started again.
    let mut tick = 0u64;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tick += 1;
        if tick % 10 == 0 {
            env.server.restart().await.unwrap();
            figures.server_restarts.fetch_add(1, Ordering::Relaxed);
            eprintln!("SOAK: server restarted");
        } else if tick % 15 == 7 {
            let old = mount.write().unwrap().take();
            if let Some(mut m) = old {
                if let Some(c) = m.child.as_mut() {
                    let _ = c.kill();
                    // Requests in flight on the dead mount fail now (as an admin would do
                    // for a mount whose daemon was killed), instead of waiting forever.
                    common::mount::abort_connection(&m.dir);
                    let _ = c.wait();
                }
                drop(m);
            }
            figures.mount_kills.fetch_add(1, Ordering::Relaxed);
            eprintln!("SOAK: mount daemon killed");
            let fresh = Mount::start_in(&env, "alice@example.com", &home, &[], true);
            *mount.write().unwrap() = Some(fresh);
        } else {
            let k = tick as u32;
            let faults = FaultConfig {
                cs_drop: k % 3,
                cs_http500: (k + 1) % 3,
                cs_http503: (k + 2) % 2,
                cs_eagain: k % 2,
                dl_drop: k % 2,
                dl_http500: (k + 1) % 2,
                ul_drop: k % 2,
                ul_http503: (k + 1) % 2,
                ..Default::default()
            };
            let n = faults.cs_drop
                + faults.cs_http500
                + faults.cs_http503
                + faults.cs_eagain
                + faults.dl_drop
                + faults.dl_http500
                + faults.ul_drop
                + faults.ul_http503;
            figures.faults.fetch_add(u64::from(n), Ordering::Relaxed);
            env.server.faults().set(faults);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(300), w).await;
    }
    env.server.faults().set(FaultConfig::default());
    // A last start of the mount recovers what a kill left unsaved; then it is unmounted.
    let last = mount.write().unwrap().take();
    drop(last);
    drop(Mount::start_in(&env, "alice@example.com", &home, &[], true));

    // The checker: every acknowledged write is there, with its content.
    let checker = env.login("alice@example.com").await;
    let mut losses = 0;
    let mut checked = 0;
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    for (rel, (acked, _)) in &ledger.paths {
        let Some(_) = acked else { continue };
        checked += 1;
        let remote = if let Some(name) = rel.strip_prefix("Team/") {
            format!("Shared with me/bob@example.com/Team/{name}")
        } else {
            format!("/{rel}")
        };
        let node = if let Some(name) = rel.strip_prefix("Team/") {
            bob.fetch().await.unwrap();
            bob.read_tree().child_by_name(&team, name).cloned()
        } else {
            checker.resolve(&format!("/{rel}")).ok()
        };
        let client = if rel.starts_with("Team/") {
            &*bob
        } else {
            &checker
        };
        let ok = match node {
            Some(n) => match client.download_to_vec(&n.handle).await {
                Ok(got) => is_one_of(&got, &ledger.allowed(rel)),
                Err(_) => false,
            },
            None => false,
        };
        if !ok {
            eprintln!("SOAK: LOST {remote}");
            losses += 1;
        }
    }
    let report = env.assert_fresh_keystreams();
    let f = &figures;
    println!(
        "SOAK minutes={minutes} ops={} failed_ops={} faults={} server_restarts={} mount_kills={} \
         bytes_written={} bytes_read={} files_checked={checked} losses={losses} unverified={} \
         keys_checked={} keystream_repeats={}",
        f.ops.load(Ordering::Relaxed),
        f.failed_ops.load(Ordering::Relaxed),
        f.faults.load(Ordering::Relaxed),
        f.server_restarts.load(Ordering::Relaxed),
        f.mount_kills.load(Ordering::Relaxed),
        f.bytes_written.load(Ordering::Relaxed),
        f.bytes_read.load(Ordering::Relaxed),
        f.unverified.load(Ordering::Relaxed),
        report.checked,
        report.repeats.len(),
    );
    assert_eq!(losses, 0, "acknowledged writes lost");
    assert_eq!(
        f.unverified.load(Ordering::Relaxed),
        0,
        "wrong bytes served"
    );
}
